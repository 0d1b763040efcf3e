# The image of compose.yaml's web, worker and migrate services: one image, three commands.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    TRAINLOOP_VAR_DIR=/var/lib/trainloop

WORKDIR /app
# Dependencies first, from the same lock `make run` and CI install, so a code change does not
# reinstall them; then the project itself without resolving anything again.
COPY requirements/run.lock requirements/
RUN pip install --require-hashes -r requirements/run.lock
COPY . .
RUN pip install --no-deps .

RUN useradd --system --uid 999 --no-create-home --home-dir /app trainloop \
    && mkdir -p /var/lib/trainloop /srv/media \
    && chown trainloop /var/lib/trainloop /srv/media
USER trainloop
# Static files into the image (whitenoise serves them). A throwaway key: without DATABASE_URL the
# settings accept it, and nothing signed with it leaves this step.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0

EXPOSE 8000
