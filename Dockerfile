# myagent-ws: serve an agent file over WebSocket. Build: docker build -t myagent-ws .
#   docker run -p 8080:8080 -e MYAGENT_WS_TOKENS=t myagent-ws        the example weather agent
#   ... -v "$PWD/my_agent.py:/app/agent.py" myagent-ws                 your agent instead
# PYTHON_IMAGE: any Debian-based image with python3.11 and venv (the tests build one locally).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
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

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="myagent-ws" \
      org.opencontainers.image.description="An LLM agent file served over WebSocket"
RUN useradd --system --create-home --uid 10001 myagent
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/entrypoint.sh deploy/docker/healthcheck.py /opt/myagent-ws/
WORKDIR /app
COPY --chown=myagent:myagent config ./config
COPY --chown=myagent:myagent examples ./examples
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MYAGENT_WS_HOST=0.0.0.0
USER 10001
EXPOSE 8080
# It probes the port the server listens on, however that was configured (healthcheck.py).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-I", "/opt/myagent-ws/healthcheck.py"]
ENTRYPOINT ["/opt/myagent-ws/entrypoint.sh"]
