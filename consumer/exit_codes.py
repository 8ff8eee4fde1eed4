"""The exit codes every ``crm-scorer`` and ``crm-producer`` command ends with (the table: docs/exit-codes.md)."""

from schemas.errors import KafkaRefusedError, KafkaUnreachableError, RegistryUnavailableError

OK = 0
FAILED = 1  # the command ran and found what it reports: a difference, a failed delivery, a set that fails verification
BAD_INPUT = 2  # settings, a file, an artifact or an argument is wrong (argparse's own usage errors are 2 as well)
REGISTRY_UNAVAILABLE = 3  # the schema registry did not answer; a supervisor may retry
PUBLISH_FAILED = 4  # a delivery no retry mends (a missing topic while running)
KAFKA_UNREACHABLE = 5  # no broker answered, or it refused the credentials
TOPICS = 6  # a topic is missing or its partition count breaks co-partitioning
ACLS = 7  # an ACL the running mode needs is not granted


def exit_code_of(error: BaseException) -> int:
    """The code a command ends with when ``error`` stops it (every command maps errors the same way)."""
    if isinstance(error, KafkaUnreachableError):
        return KAFKA_UNREACHABLE
    if isinstance(error, KafkaRefusedError):
        return ACLS
    if isinstance(error, RegistryUnavailableError):
        return REGISTRY_UNAVAILABLE
    return BAD_INPUT
