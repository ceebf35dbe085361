# skald's image. The build compiles skald and fetches the local models
# (Silero VAD, smart-turn, Moonshine, Piper, ONNX Runtime) from their
# registry packages with `skald models fetch` (pip, PyPI), hashes checked;
# nothing else is downloaded.
#
#   docker build -t skald .
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config gcc espeak-ng python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin skald
ENV SKALD_MODELS_DIR=/opt/skald/models
RUN target/release/skald models fetch

FROM debian:bookworm-slim
# espeak-ng: Piper's phonemes; ca-certificates: cloud providers, LiveKit Cloud.
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/skald /usr/local/bin/skald
COPY --from=build /opt/skald/models /opt/skald/models
COPY sip-config /etc/skald
ENV SKALD_MODELS_DIR=/opt/skald/models
VOLUME /var/lib/skald
# SIP (UDP and TCP), HTTP (API, control page, webhooks), RTP.
EXPOSE 5060/udp 5060/tcp 8080/tcp 20000-20199/udp
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fs http://127.0.0.1:8080/health/ready || exit 1
ENTRYPOINT ["skald"]
CMD ["serve", "--config", "/etc/skald/skald.yaml", "--sip-listen", "0.0.0.0:5060", "--http-listen", "0.0.0.0:8080", \
     "--rtp-ports", "20000-20199", "--data-dir", "/var/lib/skald"]
