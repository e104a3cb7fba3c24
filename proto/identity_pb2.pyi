from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JoinRequest(_message.Message):
    __slots__ = ("token", "node_name", "certificate_request")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    token: str
    node_name: str
    certificate_request: bytes
    def __init__(self, token: _Optional[str] = ..., node_name: _Optional[str] = ..., certificate_request: _Optional[bytes] = ...) -> None: ...

class IssuedCertificate(_message.Message):
    __slots__ = ("certificate", "ca_certificate", "key")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    ca_certificate: bytes
    key: bytes
    def __init__(self, certificate: _Optional[bytes] = ..., ca_certificate: _Optional[bytes] = ..., key: _Optional[bytes] = ...) -> None: ...

class MasterJoinRequest(_message.Message):
    __slots__ = ("name", "peer_url", "client_url", "timestamp", "proof")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_URL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_URL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    name: str
    peer_url: str
    client_url: str
    timestamp: int
    proof: bytes
    def __init__(self, name: _Optional[str] = ..., peer_url: _Optional[str] = ..., client_url: _Optional[str] = ..., timestamp: _Optional[int] = ..., proof: _Optional[bytes] = ...) -> None: ...

class EtcdMember(_message.Message):
    __slots__ = ("name", "peer_urls", "client_urls", "learner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_URLS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_URLS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    peer_urls: _containers.RepeatedScalarFieldContainer[str]
    client_urls: _containers.RepeatedScalarFieldContainer[str]
    learner: bool
    def __init__(self, name: _Optional[str] = ..., peer_urls: _Optional[_Iterable[str]] = ..., client_urls: _Optional[_Iterable[str]] = ..., learner: _Optional[bool] = ...) -> None: ...

class MasterJoinResponse(_message.Message):
    __slots__ = ("sealed_etcd_ca", "members", "member_id")
    SEALED_ETCD_CA_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    sealed_etcd_ca: bytes
    members: _containers.RepeatedCompositeFieldContainer[EtcdMember]
    member_id: int
    def __init__(self, sealed_etcd_ca: _Optional[bytes] = ..., members: _Optional[_Iterable[_Union[EtcdMember, _Mapping]]] = ..., member_id: _Optional[int] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("id", "token", "description", "expires", "created")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: str
    description: str
    expires: int
    created: int
    def __init__(self, id: _Optional[str] = ..., token: _Optional[str] = ..., description: _Optional[str] = ..., expires: _Optional[int] = ..., created: _Optional[int] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("ttl_seconds", "description")
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: int
    description: str
    def __init__(self, ttl_seconds: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TokenList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Token]
    def __init__(self, items: _Optional[_Iterable[_Union[Token, _Mapping]]] = ...) -> None: ...

class DeleteTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IssueCertificateRequest(_message.Message):
    __slots__ = ("user", "groups", "certificate_request", "validity_seconds")
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    user: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    certificate_request: bytes
    validity_seconds: int
    def __init__(self, user: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., certificate_request: _Optional[bytes] = ..., validity_seconds: _Optional[int] = ...) -> None: ...

class RenewCertificateRequest(_message.Message):
    __slots__ = ("certificate_request",)
    CERTIFICATE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    certificate_request: bytes
    def __init__(self, certificate_request: _Optional[bytes] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UserInfo(_message.Message):
    __slots__ = ("user", "groups")
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    user: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ...) -> None: ...

class AccessReviewRequest(_message.Message):
    __slots__ = ("verb", "resource", "namespace", "name", "user", "groups")
    VERB_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    verb: str
    resource: str
    namespace: str
    name: str
    user: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, verb: _Optional[str] = ..., resource: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., user: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ...) -> None: ...

class AccessReviewResponse(_message.Message):
    __slots__ = ("allowed", "reason")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...
