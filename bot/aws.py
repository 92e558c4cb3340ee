"""What every AWS client of hubbot shares: how long it waits, and how it words a failure.

bot/efs.py, bot/clusters/eks.py and bot/registries/ecr.py each talk to one AWS
service through boto3; this module holds what they must agree on. It imports
botocore only inside its functions, so importing it (as bot/deploy.py does
through bot/efs.py) loads no AWS library: a deploy that asks AWS nothing never
pays for boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.config import Config

NO_CREDENTIALS = "no AWS credentials: set AWS_ROLE_ARN with OIDC in CI, or AWS_PROFILE"


def client_config() -> Config:
    """The botocore client settings of every hubbot AWS client."""
    from botocore.config import Config

    # Fail fast on an unreachable endpoint: a deploy should report it, not hang.
    # (botocore's legacy retry mode counts max_attempts as retries: one try and two more.)
    return Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 2})


def reason(exc: Exception) -> str:
    """Why an AWS call failed, in one line: how to get credentials when there are none,
    else the first line of what botocore said."""
    from botocore.exceptions import NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS
    return one_line(str(exc), type(exc).__name__)


def one_line(text: str, empty: str = "no reason given") -> str:
    """The first line of `text` (botocore's messages can run on), or `empty` when blank."""
    lines = text.strip().splitlines()
    return lines[0] if lines else empty
