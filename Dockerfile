# syntax=docker/dockerfile:1
# myagent-ws: serve an agent file over WebSocket. Build: docker build -t myagent-ws .
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.runtime.lock ./
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -r requirements.runtime.lock
COPY pyproject.toml README.md ./
COPY myagent ./myagent
COPY service ./service
COPY middleware ./middleware
COPY agent_loader ./agent_loader
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="myagent-ws" \
      org.opencontainers.image.description="An LLM agent file served over WebSocket"
RUN useradd --system --create-home --uid 10001 myagent
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=myagent:myagent config ./config
COPY --chown=myagent:myagent examples ./agents
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MYAGENT_WS_HOST=0.0.0.0
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status != 200)"]
ENTRYPOINT ["myagent-ws"]
CMD ["server", "--config", "/app/config/server.yaml"]
