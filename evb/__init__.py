"""evb: an NSCLDAQ-compatible event orderer and event builder in Python."""

from evb.batch import HEADER_DTYPE, NULL_TIMESTAMP, Fragment, FragmentBatch
from evb.errors import ConfigError, EvbError, RemoteProtocolError, SourceError

__all__ = [
    "HEADER_DTYPE",
    "NULL_TIMESTAMP",
    "ConfigError",
    "EvbError",
    "Fragment",
    "FragmentBatch",
    "RemoteProtocolError",
    "SourceError",
]
