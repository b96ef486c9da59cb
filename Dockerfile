# One image for both roles: `segmenter-consumer` and `segmenter-producer`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY segmenter ./segmenter
COPY consumer ./consumer
COPY producer ./producer
COPY config ./config
# Then compile the core's numba functions once, as the user who runs them: numba writes its cache only where that
# user can write (NUMBA_CACHE_DIR), and ignores a cache it could not have written, so warming it as root into
# site-packages would leave every new container compiling for about 35 s of CPU at its first start. From /, so
# that the installed package is imported, not ./segmenter.
ENV NUMBA_CACHE_DIR=/home/segmenter/.cache/numba
RUN pip install . && useradd --create-home segmenter
USER segmenter
RUN cd / && python -c "from consumer.warmup import warm_up; from segmenter.config import default_config; \
from segmenter.pipeline import Segmenter; warm_up(lambda: Segmenter(default_config()))"
CMD ["segmenter-consumer", "--help"]
