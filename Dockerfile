# The orchestrator's dashboard (`orchestrator serve`) with the four coding CLIs at their pinned versions.
#   docker build -t ai-agents-orchestrator .
#   docker run -e ORCHESTRATOR_UI_TOKEN=... -v orchestrator-state:/var/lib/orchestrator \
#     -v "$PWD:/repos/app" -p 127.0.0.1:8765:8765 ai-agents-orchestrator
# compose.yaml adds Prometheus and Grafana; deploy/cluster/compose.yaml runs it as a dashboard and N
# workers (the [cluster] extra is installed) with Temporal and PostgreSQL. Checked without a container
# engine by tests/deploy/.

# Node.js for the CLIs (Claude Code, Codex, Gemini CLI and Copilot CLI are npm packages; Node 20+).
FROM node:20-bookworm-slim AS node

FROM python:3.12-slim-bookworm

# The CLIs' versions, as orchestrator/adapters/pins.py pins them (tests/deploy/ fails when they drift);
# `orchestrator install-clis` installs exactly those, and the build checks it got them.
ARG CLAUDE_CODE_VERSION=2.1.332
ARG CODEX_VERSION=0.171.0
ARG GEMINI_CLI_VERSION=0.61.0
ARG COPILOT_VERSION=1.0.102

LABEL org.opencontainers.image.title="ai-agents-orchestrator" \
      org.opencontainers.image.description="Drive the real coding CLIs through implement, review, refine on a git branch of their own." \
      org.opencontainers.image.licenses="MIT" \
      io.orchestrator.cli.claude="${CLAUDE_CODE_VERSION}" \
      io.orchestrator.cli.codex="${CODEX_VERSION}" \
      io.orchestrator.cli.gemini="${GEMINI_CLI_VERSION}" \
      io.orchestrator.cli.copilot="${COPILOT_VERSION}"

COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx

# git for the runs; bubblewrap for the agents' sandbox (sandbox: auto uses it where it works).
# Not pinned to Debian revisions: a point release replaces them and the pinned one vanishes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git bubblewrap ca-certificates \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORCHESTRATOR_HOME=/var/lib/orchestrator \
    ORCHESTRATOR_CLI_DIR=/opt/orchestrator/clis \
    ORCHESTRATOR_LOG_FORMAT=json \
    HOME=/home/orchestrator

WORKDIR /src
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY workflows ./workflows
RUN pip install --no-cache-dir "./[cluster]" \
    && orchestrator install-clis --prefix /opt/orchestrator/clis \
    && for pair in "@anthropic-ai/claude-code=${CLAUDE_CODE_VERSION}" "@openai/codex=${CODEX_VERSION}" \
         "@google/gemini-cli=${GEMINI_CLI_VERSION}" "@github/copilot=${COPILOT_VERSION}"; do \
         pkg="${pair%=*}"; want="${pair#*=}"; \
         got="$(node -p "require('/opt/orchestrator/clis/node_modules/${pkg}/package.json').version")"; \
         [ "$got" = "$want" ] || { echo "${pkg} is ${got}; the Dockerfile says ${want}: take the ARGs from orchestrator/adapters/pins.py" >&2; exit 1; }; \
       done \
    && npm cache clean --force

# A user of its own; the state home (runs, state.db, audit.jsonl, logs) on a volume; repositories
# are mounted under /repos.
RUN groupadd --system --gid 10001 orchestrator \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/orchestrator orchestrator \
    && mkdir -p /var/lib/orchestrator /repos \
    && chown 10001:10001 /var/lib/orchestrator /repos
VOLUME ["/var/lib/orchestrator"]
WORKDIR /repos
USER 10001:10001

EXPOSE 8765
# The dashboard answers /healthz without its token.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4)"]
# Bound beyond loopback, `serve` wants a token: set ORCHESTRATOR_UI_TOKEN when starting the container.
ENTRYPOINT ["orchestrator"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8765"]
