# One image for both roles: `segmenter-consumer` and `segmenter-producer`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY segmenter ./segmenter
COPY consumer ./consumer
COPY producer ./producer
COPY config ./config
RUN pip install . && useradd --create-home segmenter
USER segmenter
CMD ["segmenter-consumer", "--help"]
