"""Running freshet: the local stack launcher (Kafka from Maven Central, Weaviate built from its Go
module, the two workers), and the configuration files for Docker users (Prometheus, Grafana)."""
