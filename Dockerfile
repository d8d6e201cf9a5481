# The liveblog service image: `liveblog serve` by default; `liveblog worker` for dispatchers.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY liveblog ./liveblog
COPY web ./web
COPY seeds ./seeds
# /var/lib/liveblog/media is where compose mounts the shared media volume (owned by the service user,
# so a new named volume takes that owner).
RUN pip install . && useradd --system --home /app liveblog \
    && mkdir -p /var/lib/liveblog/media && chown -R liveblog /var/lib/liveblog
USER liveblog
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz').status == 200 else 1)"
CMD ["liveblog", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-dispatcher"]
