# The service's image: the locked dependencies, the code, and a user that is not root.
#   docker build -t trio-service .
#   docker run --rm -p 8080:8080 --stop-timeout 30 trio-service
FROM python:3.11-slim

LABEL org.opencontainers.image.title="trio-service"

# Logs leave at once (stdout is a pipe); no .pyc files written at run time by a read-only user.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SERVICE_OPS_HOST=0.0.0.0

WORKDIR /app

# Dependencies first, from the hashed lock file, so a code change reuses this layer.
COPY requirements/main.txt requirements/main.txt
RUN pip install --require-hashes -r requirements/main.txt

COPY service/ service/

# The default database (sqlite:///var/service.db) lives in /app/var: the one writable place.
RUN useradd --system --uid 10001 --home-dir /app --no-create-home service \
    && mkdir var \
    && chown service var
USER 10001

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=2)"]

# Exec form: python is PID 1 and receives SIGTERM itself (a shell in between would swallow
# it), so `docker stop` begins the service's two-phase stop. The stop may take up to
# SERVICE_SHUTDOWN_TIMEOUT (25 s): give the container longer than that before SIGKILL
# (`--stop-timeout 30`, or Kubernetes' default terminationGracePeriodSeconds of 30).
CMD ["python", "-m", "service"]
