# One image for every engine process; the command picks the role (a lane's worker, the
# simulators, the starter).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir .
COPY . .
ENV PYTHONUNBUFFERED=1 DATA_DIR=/data
VOLUME ["/data"]
CMD ["python", "worker.py", "--queues", "all"]
