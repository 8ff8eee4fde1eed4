"""The project's one error tree.

It lives in the lowest layer (``schemas``) so that every package can raise and catch the same types
while dependencies keep pointing one way::

    CrmScorerError
    ├── InvalidEventError          a message that cannot be scored: it goes to the dead-letter topic
    │   ├── FramingError           reason ``empty_value`` / ``unknown_framing``: not one of our framings
    │   ├── UnknownSchemaError     reason ``unknown_schema``: fingerprint or registry id we cannot resolve
    │   ├── AvroDecodeError        reason ``avro_decode_error``: bytes do not match the writer schema
    │   └── EventValidationError   reason ``missing_id`` / ``invalid_field``: decoded, but unusable
    ├── RecordEncodingError        a record we write does not fit its own schema: our bug, never dead-lettered
    ├── RegistryUnavailableError   the Schema Registry did not answer: transient, retried, never dead-lettered
    ├── ConfigError                settings or scorer.yaml are wrong; names the key
    │   ├── KafkaUnreachableError  no broker answered, or it refused the credentials (exit 5)
    │   └── KafkaRefusedError      the broker refused to describe a topic: an ACL is missing (exit 7)
    ├── ArtifactError              a model artifact is missing, tampered with, or its manifest is inconsistent
    │   └── StoreError             models.store: an unknown version, a set failing verification, no rollback
    ├── CaptureError               the monitor's training capture cannot be trained on (a corrupt file, no rows)
    │
    │   defined beside what raises them (they carry values of the Kafka edge), still under the one root:
    ├── PublishError               consumer.kafka.delivery: a delivery no retry can mend (missing topic, a
    │                              dead letter the broker refuses); the worker stops with offsets uncommitted
    └── NotAuthorized              consumer.kafka.delivery: an exactly-once produce refused for a missing ACL;
                                   carries the ``Refusal`` (which ACL), retried until an operator grants it

    Exception                      outside the tree, never seen outside its module:
    ├── _Wedged                    consumer.kafka.guarantees: a transactional call kept failing; caught there
    │                              and turned into a producer replacement
    └── Refused                    consumer.kafka.model_control: an activation a worker will not serve; caught
                                   there, counted by its ``reason``, the running set keeps scoring

Library exceptions are translated where they enter (``raise AvroDecodeError(...) from exc``).
Every message names the field (as a dotted path) or the source it is about. A test walks every exception
class of ``consumer``, ``models`` and ``schemas`` and checks that this drawing names it.
"""

from __future__ import annotations


class CrmScorerError(Exception):
    """Root of every error this project raises on purpose."""


class InvalidEventError(CrmScorerError):
    """A message that cannot be scored. ``reason`` is the dead-letter reason code, ``field`` the dotted path."""

    reason = "invalid_event"

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        if reason is not None:
            self.reason = reason


class FramingError(InvalidEventError):
    reason = "unknown_framing"


class UnknownSchemaError(InvalidEventError):
    reason = "unknown_schema"


class AvroDecodeError(InvalidEventError):
    reason = "avro_decode_error"


class EventValidationError(InvalidEventError):
    reason = "invalid_field"


class RecordEncodingError(CrmScorerError):
    """A record this project built (a result, a generated event) does not fit the schema it is written with.

    The message names the schema; no consumed message is at fault, so it is never a dead letter.
    """


class RegistryUnavailableError(CrmScorerError):
    """The Schema Registry could not be reached; the caller retries, the message is not dead-lettered."""


class ConfigError(CrmScorerError):
    """Settings are wrong. The message names the key (dotted path) and the source (file or environment)."""


class KafkaUnreachableError(ConfigError):
    """No broker answered at the configured address, or it refused the credentials."""


class KafkaRefusedError(ConfigError):
    """The broker refused to describe a topic the command needs: an ACL is missing."""


class ArtifactError(CrmScorerError):
    """A model artifact is missing or does not match its manifest."""


class CaptureError(CrmScorerError):
    """The training capture (Parquet rows of joined outcomes) is unreadable or lacks the rows asked for.

    The message names the file or the model it is about.
    """
