"""What operators see of a running Overture: metrics, traces, logs and error reports.

Each part is optional at run time and cheap when off: ``metrics`` (Prometheus), ``tracing``
(OpenTelemetry, the ``otel`` extra), ``logs`` (JSON lines or readable ones), ``sentry`` (the
``sentry`` extra)."""
