"""CSV exports: streamed, with no row cap and flat memory (docs/architecture.md, "CSV exports").

An export is one transaction on the primary database, REPEATABLE READ so that the header (the metrics found) and the
rows come from the same snapshot, exempt from statement and idle-in-transaction timeouts (a client may read slowly).
Rows come from a server-side cursor a chunk at a time and leave as CSV (RFC 4180: comma, CRLF, quotes where
needed) in blocks of about 64 KiB; nothing holds more than one chunk. The first block (the header) is produced
before the response starts, so a failure to begin (the database down, say) is still an ordinary problem response.
"""

import csv
import io
import uuid

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.http import StreamingHttpResponse
from rest_framework.renderers import BaseRenderer

CSV_CONTENT_TYPE = "text/csv"
CHUNK_ROWS = 2000
FLUSH_BYTES = 64 * 1024
# Exports read the primary (the replica's lag would show as missing rows), whatever a router says.
EXPORT_DATABASE = DEFAULT_DB_ALIAS


class CSVRenderer(BaseRenderer):
    """Lets a view negotiate ``text/csv`` (``Accept: text/csv`` or ``?format=csv``); the view then answers with
    ``csv_response``, so this renderer never renders a body itself."""

    media_type = CSV_CONTENT_TYPE
    format = "csv"
    charset = "utf-8"
    streams_export = True  # no pagination parameter applies (iothub.api.query_parameters)

    def render(self, data, accepted_media_type=None, renderer_context=None):
        raise TypeError("CSV is streamed by csv_response(), not rendered from data")


def wants_csv(request):
    return getattr(request.accepted_renderer, "format", None) == CSVRenderer.format


def server_side_rows(connection, query, params):
    """The rows of ``query`` from a named (server-side) cursor, ``CHUNK_ROWS`` at a time."""
    with connection.connection.cursor(name=f"export_{uuid.uuid4().hex}") as cursor:
        cursor.itersize = CHUNK_ROWS
        cursor.execute(query, params)
        while rows := cursor.fetchmany(CHUNK_ROWS):
            yield from rows


def _export(produce):
    """Runs ``produce(connection) -> (header, rows)`` in the export transaction; yields the CSV in blocks."""
    connection = connections[EXPORT_DATABASE]
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=EXPORT_DATABASE):
        with connection.cursor() as cursor:
            if outermost:  # inside an enclosing transaction (a test's) its isolation level stands
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SET LOCAL statement_timeout = 0")
            cursor.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        header, rows = produce(connection)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            if buffer.tell() >= FLUSH_BYTES:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()


def csv_response(produce, *, filename, headers=None):
    """A streaming CSV response of ``produce(connection) -> (header, rows)``: a header row (a list of names) and an
    iterable of rows whose cells are text, numbers or None (an empty cell)."""
    body = _export(produce)
    first = next(body)  # begins the transaction and reads the header: errors here are problem responses

    def stream():  # a generator, so closing the response closes the export (its transaction ends)
        try:
            yield first
            yield from body
        finally:
            body.close()  # also when the response is closed before the rows were asked for

    response = StreamingHttpResponse(stream(), content_type=f"{CSV_CONTENT_TYPE}; charset=utf-8", headers=headers)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Accel-Buffering"] = "no"  # nginx passes it on as it comes instead of buffering it to disk
    return response
