# ghcr.io/modelplane/modelplane: the `modelplane` CLI (operator, sidecar, token). Node.js runs
# the TypeScript sources directly (type stripping), so there is no build step.
#   docker build -t ghcr.io/modelplane/modelplane:$(node -p 'require("./package.json").version') .
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY cli ./cli
COPY crds ./crds
COPY lib ./lib
COPY operator ./operator
COPY sidecar ./sidecar
USER 65532:65532
# The distroless image's entrypoint is node.
ENTRYPOINT ["/nodejs/bin/node", "cli/modelplane.ts"]
CMD ["--help"]
