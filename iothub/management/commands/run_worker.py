"""``manage.py run_worker``: the one background process of the project (see iothub.worker)."""

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import autodiscover_modules

from iothub import edition
from iothub.worker import Worker, registry

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Runs the tasks every app registers in its tasks.py: NOTIFY listeners and periodic tasks."

    def add_arguments(self, parser):
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=settings.WORKER_POLL_INTERVAL,
            help="Seconds between two runs of every listener even without NOTIFY (default: %(default)s).",
        )

    def handle(self, *args, poll_interval, **options):
        if poll_interval <= 0:
            raise CommandError("--poll-interval must be a positive number of seconds.")
        try:
            edition.check_at_start()
        except edition.EditionMismatch as mismatch:
            raise CommandError(str(mismatch)) from None
        autodiscover_modules("tasks")
        for task in registry.periodic_tasks.values():
            at_start = "and at start" if task.run_at_start else "first after one interval"
            logger.info("Periodic task %s every %s, %s", task.name, task.every, at_start)
        for channel, func in registry.listeners.items():
            logger.info("Listener %s.%s on channel %s", func.__module__, func.__qualname__, channel)

        worker = Worker(registry, poll_interval=poll_interval)

        def stop(signum, frame):
            worker.stop()

        # Docker sends SIGTERM, a terminal SIGINT: both finish the task in progress and exit 0.
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        worker.run()
        self.stdout.write("Worker stopped.")
