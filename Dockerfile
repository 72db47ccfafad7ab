# posebh on a CUDA PyTorch base image: `docker build -t posebh .` then `docker run --gpus all posebh --help`.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1

WORKDIR /opt/posebh
COPY pyproject.toml README.md ./
COPY posebh_cli ./posebh_cli
# Installs this checkout as a regular (non-editable) package: the bundled recipes and skeleton YAMLs are package
# data inside posebh_cli, as in the wheel. Its dependency ranges live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[onnx]"

WORKDIR /work
ENTRYPOINT ["posebh"]
CMD ["--help"]
