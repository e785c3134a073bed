# The avatar-platform image: the package and its pinned stack (constraints.txt) on Python 3.11.
# One image for every Ray node (KubeRay pods, `ray up` containers) and for one-off CLI runs:
#
#   docker build -t avatar-platform:0.1.0 .
#   docker run --rm avatar-platform:0.1.0                      # avatar-platform --help
#   docker run --rm --gpus all avatar-platform:0.1.0 avatar-platform generate --preset tiny
#
# CUDA comes inside the torch wheels; the host needs only an NVIDIA driver and the container
# toolkit. The default build takes torch from PyTorch's CUDA 12.6 index because that is the only
# torch 2.14 build with V100 (sm_70) kernels: the torch 2.14 on PyPI is built for CUDA 13, which
# dropped Volta, and fails there with "no kernel image is available for execution on the device".
# The 12.6 build also runs on T4, A10G, A100, H100 and H200. For Turing or newer only:
#
#   docker build --build-arg TORCH_INDEX_URL= --build-arg REQUIRE_CUDA_ARCH= -t ... .
#
# docs/cluster.md walks through building, pushing and using it.
FROM python:3.11-slim-bookworm

# where torch and torchvision come from (empty: PyPI's CUDA 13 build)
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
# the build fails unless torch has kernels for this architecture (empty: no check)
ARG REQUIRE_CUDA_ARCH=sm_70

# wget: KubeRay's default health probes call it; rsync: `ray up` copies files into the container
# with it. Nothing else from apt: opencv is the headless wheel, Embree ships inside embreex.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget rsync \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    HF_HUB_DISABLE_TELEMETRY=1
RUN python -m venv "$VIRTUAL_ENV"

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./

# The stack first, in a layer of its own (~7 GB) that a code change does not rebuild: install the
# project's dependencies through an empty stand-in package. torch is named in the same pip command
# as the rest, with the constraints, so pip cannot move it (see the Makefile). A local version such
# as 2.14.1+cu126 satisfies the pin torch==2.14.1, and pip prefers it over PyPI's 2.14.1.
# boto3 is not a dependency of the package: the `ray up` head's autoscaler needs it to start EC2
# nodes (unpinned: constraints.txt pins what the package uses).
RUN mkdir avatar_platform && touch avatar_platform/__init__.py \
    && pip install -c constraints.txt ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        . boto3 \
    && pip uninstall -y avatar-platform \
    && rm -rf avatar_platform build ./*.egg-info

COPY avatar_platform ./avatar_platform
RUN pip install --no-deps -c constraints.txt . && rm -rf /src/build /src/*.egg-info
RUN python -c "import os, sys, torch; \
arch = os.environ.get('REQUIRE_CUDA_ARCH', ''); archs = torch.cuda.get_arch_list(); \
print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, kernels for {archs}'); \
sys.exit(f'torch has no {arch} kernels: set TORCH_INDEX_URL to a build with them' \
         if arch and arch not in archs else 0)"
RUN avatar-platform --version && ray --version

# Ray runs as an ordinary user; uid 1000 matches the `ubuntu` user of the AWS hosts, so files that
# `ray up` mounts from the host stay readable in the container.
RUN useradd --create-home --uid 1000 --shell /bin/bash ray
USER ray
WORKDIR /home/ray

# No ENTRYPOINT on purpose: `ray up` starts this image with `bash` as its command and KubeRay
# replaces the command with `ray start ... --block`; an ENTRYPOINT of avatar-platform would take
# those as its own arguments and the node would never start. Run the CLI by name instead.
CMD ["avatar-platform", "--help"]
