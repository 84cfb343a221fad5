# ghcr.io/modelplane/modelplane: the `modelplane` CLI (operator, sidecar, token). The sources
# are compiled to JavaScript (tsc -p tsconfig.build.json) in a build stage and the image runs
# the JavaScript, laid out as the sources are (cli/modelplane.js beside where cli/modelplane.ts
# would be): Node.js running TypeScript by type stripping loads its WebAssembly transformer,
# about 30 MB more resident memory in every sidecar.
#
#   make image      # docker or podman; base images made here when no registry answers
#   docker build -t ghcr.io/modelplane/modelplane:0.1.0 .
#
# The base images are build arguments, so that a build can use copies made without a registry
# (hack/image.sh). The final stage has no shell and no package manager, and runs as nonroot
# (65532) with a read-only root file system.
ARG BUILD_IMAGE=node:24-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

FROM ${BUILD_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# When the registry is reached through a network that needs them, the build machine's npm
# configuration and CA bundle come in as build secrets (--secret id=npmrc,src=~/.npmrc
# --secret id=ca,src=/path/to/ca.pem): mounted for this step only, never part of a layer.
RUN --mount=type=secret,id=npmrc,required=false \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/npmrc ]; then export NPM_CONFIG_USERCONFIG=/run/secrets/npmrc; fi; \
    if [ -s /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi; \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund --cache /tmp/npm-cache \
    && rm -rf /tmp/npm-cache

FROM ${BUILD_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npmrc,required=false \
    --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/npmrc ]; then export NPM_CONFIG_USERCONFIG=/run/secrets/npmrc; fi; \
    if [ -s /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi; \
    npm ci --ignore-scripts --no-audit --no-fund --cache /tmp/npm-cache \
    && rm -rf /tmp/npm-cache
COPY tsconfig.json tsconfig.build.json ./
COPY cli ./cli
COPY crds ./crds
COPY lib ./lib
COPY operator ./operator
COPY sidecar ./sidecar
COPY webhook ./webhook
# Compiled, not shipped: `modelplane dev` and the test helpers import them.
COPY dev ./dev
COPY harness ./harness
# The JavaScript without source maps; the store's migrations (SQL) beside it, as in the sources.
RUN node_modules/.bin/tsc -p tsconfig.build.json --sourceMap false \
    && cp -r operator/store/migrations dist/operator/store/

FROM ${RUNTIME_IMAGE}
WORKDIR /app
ENV NODE_ENV=production \
    PATH=/nodejs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /app/dist/cli ./cli
COPY --from=build /app/dist/crds ./crds
COPY --from=build /app/dist/lib ./lib
COPY --from=build /app/dist/operator ./operator
COPY --from=build /app/dist/sidecar ./sidecar
COPY --from=build /app/dist/webhook ./webhook
USER 65532:65532
# The chart runs it with the argument `operator`; model pods run it with `sidecar`.
ENTRYPOINT ["/nodejs/bin/node", "cli/modelplane.js"]
CMD ["--help"]
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="modelplane" \
      org.opencontainers.image.description="The modelplane operator and sidecar" \
      org.opencontainers.image.source="https://github.com/modelplane/modelplane" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
