"""How every Kafka client mlcycle builds reaches the brokers: one place for address and security.

Producers, consumers and admin clients are made here and nowhere else (a unit test
holds the rest of the code to it), so a TLS or SASL setting can never be honoured by
one client and forgotten by another.
"""

from __future__ import annotations

from typing import Any, TypedDict

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from mlcycle.common.settings import KafkaSettings


class ClientConfig(TypedDict, total=False):
    """The kafka-python options that say where the brokers are and how to log in."""

    bootstrap_servers: str
    security_protocol: str
    ssl_cafile: str | None
    ssl_check_hostname: bool
    sasl_mechanism: str | None
    sasl_plain_username: str
    sasl_plain_password: str


def client_config(kafka: KafkaSettings) -> ClientConfig:
    """kafka-python options for the brokers' address, TLS and SASL login."""
    kafka.check_security()
    protocol = kafka.security_protocol
    config = ClientConfig(bootstrap_servers=kafka.bootstrap_servers, security_protocol=protocol)
    if protocol in ("SSL", "SASL_SSL"):
        # Without a CA file kafka-python verifies against the system's CAs.
        config["ssl_cafile"] = str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        config["ssl_check_hostname"] = True
    if protocol.startswith("SASL_"):
        config["sasl_mechanism"] = kafka.sasl_mechanism
        config["sasl_plain_username"] = kafka.sasl_username
        config["sasl_plain_password"] = kafka.sasl_password
    return config


def new_producer(kafka: KafkaSettings, **options: Any) -> KafkaProducer:
    """A KafkaProducer on ``kafka``'s brokers, with ``options`` for everything else."""
    return KafkaProducer(**client_config(kafka), **options)


def new_consumer(kafka: KafkaSettings, **options: Any) -> KafkaConsumer:
    """A KafkaConsumer on ``kafka``'s brokers (subscribe or assign it afterwards)."""
    return KafkaConsumer(**client_config(kafka), **options)


def new_admin(kafka: KafkaSettings, **options: Any) -> KafkaAdminClient:
    """A KafkaAdminClient on ``kafka``'s brokers."""
    return KafkaAdminClient(**client_config(kafka), **options)
