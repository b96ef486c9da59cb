# One image for both roles: `segmenter-consumer` and `segmenter-producer`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY segmenter ./segmenter
COPY consumer ./consumer
COPY producer ./producer
COPY config ./config
# Then compile the core's numba functions once, into the installed package (numba caches beside the sources;
# from /, so that the installed package is imported, not ./segmenter).
RUN pip install . \
 && cd / && python -c "from segmenter.config import default_config; from segmenter.pipeline import Segmenter; \
from segmenter.events import parse_event; Segmenter(default_config()).process(parse_event( \
b'{\"event_id\":\"e\",\"customer_id\":\"c\",\"type\":\"purchase\",\"ts\":\"2026-01-01T00:00:00Z\",\"amount\":1}'))" \
 && useradd --create-home segmenter
USER segmenter
CMD ["segmenter-consumer", "--help"]
