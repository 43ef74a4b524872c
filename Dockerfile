# syntax=docker/dockerfile:1
#
# DeepSpace Workflows: ONE image for every process of the stack. docker-compose.yml runs it as the
# gateway, the worker, the one-shot migrate+seed job, the upstream simulator and the web and admin
# apps, choosing the process with `command`. Build it on its own with:
#
#   docker build -t deepspace-workflows:local .
#
# Stages:
#   deps     `npm ci` of all workspaces, dev dependencies included (the Prisma CLI generates the
#            client in the root postinstall; Nuxt's build tooling is needed by the next stage)
#   build    the sources, `nuxt build` of web and admin, then the dev dependencies are pruned
#   runtime  node:24-bookworm-slim as the unprivileged `node` user. The TypeScript sources run
#            as they are (Node 24 strips types), so there is no transpile step.

############################################ deps ############################################
FROM node:24-bookworm-slim AS deps
WORKDIR /app
ENV npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
# Prisma's install step looks for the system libssl to pick its engine build; slim images lack it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Manifests first, so the `npm ci` layer is reused until a dependency (or the schema) changes.
# npm ci needs the package.json of every workspace. The root `postinstall` runs
# scripts/prisma-generate.mjs, which generates the Prisma client from prisma/ into
# core/src/generated/, so the script and the whole prisma/ folder must be in place first.
COPY package.json package-lock.json ./
COPY scripts/prisma-generate.mjs scripts/prisma-generate.mjs
COPY prisma/ prisma/
COPY core/package.json core/package.json
COPY workflows-dsl/package.json workflows-dsl/package.json
COPY gateway/package.json gateway/package.json
COPY temporal-workers/package.json temporal-workers/package.json
COPY tests/simulator/package.json tests/simulator/package.json
COPY web/package.json web/package.json
COPY admin/package.json admin/package.json
RUN --mount=type=cache,target=/root/.npm \
    npm ci \
 && test -d core/src/generated/prisma

############################################ build ###########################################
FROM deps AS build
# The sources (.dockerignore keeps out node_modules, build output, the host's generated Prisma
# client, .env files and local state). core/src/generated from the deps stage is kept.
COPY . .
# The web and admin apps are served from their production build (.output/, self-contained).
RUN cd web && npx nuxt build \
 && cd ../admin && npx nuxt build \
 && test -f /app/web/.output/server/index.mjs \
 && test -f /app/admin/.output/server/index.mjs
# Only production dependencies go to the runtime image (drops the Prisma CLI, vitest, TypeScript,
# the `node` npm package, …); Nuxt's intermediate .nuxt/ folders are not needed either.
RUN npm prune --omit=dev \
 && rm -rf web/.nuxt admin/.nuxt

########################################### runtime ##########################################
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Application files stay owned by root (read-only for the app). Only /app/.data is writable by
# `node`: local files and LanceDB live there (docker-compose.yml mounts a named volume on it,
# which inherits this ownership when it is first created).
COPY --from=build /app /app
RUN mkdir -p /app/.data/files /app/.data/lancedb \
 && chown -R node:node /app/.data
USER node
# gateway, web, admin, upstream simulator
EXPOSE 8080 3000 3001 4010
# The gateway by default; docker-compose.yml sets the command of every service.
CMD ["node", "--single-threaded-gc", "--max-semi-space-size=16", "gateway/src/main.ts"]
