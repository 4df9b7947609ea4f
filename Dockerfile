# One image, three roles: `truthloop operator | feedback | sidecar` is the container's command.
# Dependencies install in their own layer so a code change rebuilds only the last layers.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
# Install only the runtime dependencies first (cached while pyproject.toml is unchanged).
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install --prefix=/install -r /tmp/requirements.txt
COPY truthloop ./truthloop
COPY examples ./examples
RUN pip install --prefix=/install --no-deps .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
COPY crds /usr/share/truthloop/crds
# A numeric non-root user: Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
ENTRYPOINT ["truthloop"]
CMD ["--help"]
