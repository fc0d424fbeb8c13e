from django.core.management.base import BaseCommand

from iothub.login_protection import login_counters_clear


class Command(BaseCommand):
    help = (
        "Clears the brute-force protection's counters, and so their lock-outs: those of --username (from every "
        "address), of --address, of both together, or, with neither, all of them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", help="the account whose lock-outs end, from every address")
        parser.add_argument("--address", help="the client address whose lock-outs end (IPv4 or IPv6)")

    def handle(self, *args, username=None, address=None, **options):
        cleared = login_counters_clear(username=username, address=address)
        self.stdout.write(f"Cleared {cleared} login counter(s).")
