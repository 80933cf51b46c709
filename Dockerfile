# One image for the web process and the GPU workers (the web process never imports torch): fitboard[server] is the
# web side, [train] adds torch and fastai for the workers, [s3] an S3-compatible artifact bucket.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 FITBOARD_HOME=/fitboard FITBOARD_DATA_ROOT=/data
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY fitboard fitboard
COPY app app
COPY worker worker
COPY migrations migrations
COPY templates templates
COPY recipes recipes
RUN pip install "torch==2.14.1" "torchvision==0.29.1" && pip install -e ".[server,train,s3]"
EXPOSE 8000
CMD ["fitboard", "web", "--host", "0.0.0.0", "--port", "8000"]
