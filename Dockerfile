# ghcr.io/modelplane/modelplane: the `modelplane` CLI (operator, sidecar, token). Node.js runs
# the TypeScript sources directly (type stripping), so there is no build step.
#   docker build -t ghcr.io/modelplane/modelplane:$(node -p 'require("./package.json").version') .
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production \
    PATH=/nodejs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY cli ./cli
COPY crds ./crds
COPY lib ./lib
COPY operator ./operator
COPY sidecar ./sidecar
USER 65532:65532
# The chart runs it with the argument `operator`; model pods run it with `sidecar`.
ENTRYPOINT ["/nodejs/bin/node", "cli/modelplane.ts"]
CMD ["--help"]
