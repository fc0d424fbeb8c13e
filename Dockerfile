# The application image: granian (web), the worker and the one-shot init share it (see docker-compose.yml).
FROM python:3.13.7-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# openssl: init generates the secrets and the self-signed certificate with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*

# A fixed id: the secrets init writes are readable by this group.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app
# Requirements first: code changes reuse the installed layer.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Settings refuse to load without these; collectstatic contacts no database, so throwaway values do.
RUN DJANGO_SECRET_KEY=collectstatic-only DJANGO_ALLOWED_HOSTS=localhost \
    DATABASE_URL=postgres://collectstatic@localhost/collectstatic \
    python manage.py collectstatic --noinput

USER app
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
