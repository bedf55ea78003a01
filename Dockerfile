# The freshet worker image (indexer or query: the command chooses). Used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/freshet \
    PATH=/opt/freshet/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra onnx --no-install-project
COPY freshet ./freshet
COPY schemas ./schemas
COPY streams ./streams
COPY workers ./workers
COPY ops ./ops
RUN uv sync --frozen --no-dev --extra onnx

# State of the Faust app (tables, offsets cache) lives here.
ENV FRESHET_HOME=/var/lib/freshet FRESHET_WEB_BIND=0.0.0.0
VOLUME /var/lib/freshet
EXPOSE 6066 6067
ENTRYPOINT ["freshet"]
CMD ["worker", "indexer"]
