"""The containers tests use the real services' private namespaces, as the
integration tests do (a fresh MariaDB database, an HBase table prefix, a private
RabbitMQ queue): the same fixtures."""

from tests.integration.conftest import (  # noqa: F401 (fixtures, found by name)
    broker_url,
    hbase_service_url,
    hbase_url,
    rabbitmq_service_url,
)
