from kybernetes.proto import objects_pb2 as _objects_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Register(_message.Message):
    __slots__ = ("node", "running_pod_uids", "watch_nodes", "watch_services")
    NODE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_POD_UIDS_FIELD_NUMBER: _ClassVar[int]
    WATCH_NODES_FIELD_NUMBER: _ClassVar[int]
    WATCH_SERVICES_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    running_pod_uids: _containers.RepeatedScalarFieldContainer[str]
    watch_nodes: bool
    watch_services: bool
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ..., running_pod_uids: _Optional[_Iterable[str]] = ..., watch_nodes: _Optional[bool] = ..., watch_services: _Optional[bool] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class PodStatusReport(_message.Message):
    __slots__ = ("namespace", "name", "uid", "status")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    uid: str
    status: _objects_pb2.PodStatus
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., uid: _Optional[str] = ..., status: _Optional[_Union[_objects_pb2.PodStatus, _Mapping]] = ...) -> None: ...

class PodTerminated(_message.Message):
    __slots__ = ("namespace", "name", "uid")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    uid: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., uid: _Optional[str] = ...) -> None: ...

class EventReport(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _objects_pb2.Event
    def __init__(self, event: _Optional[_Union[_objects_pb2.Event, _Mapping]] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("request_id", "data", "eof", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    data: bytes
    eof: bool
    error: str
    def __init__(self, request_id: _Optional[str] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ExecOutput(_message.Message):
    __slots__ = ("request_id", "stream", "data", "exited", "exit_code", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    stream: int
    data: bytes
    exited: bool
    exit_code: int
    error: str
    def __init__(self, request_id: _Optional[str] = ..., stream: _Optional[int] = ..., data: _Optional[bytes] = ..., exited: _Optional[bool] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class NodeMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "pod_status", "pod_terminated", "event", "log_chunk", "exec_output", "goodbye", "credit")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    POD_STATUS_FIELD_NUMBER: _ClassVar[int]
    POD_TERMINATED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    LOG_CHUNK_FIELD_NUMBER: _ClassVar[int]
    EXEC_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    GOODBYE_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    pod_status: PodStatusReport
    pod_terminated: PodTerminated
    event: EventReport
    log_chunk: LogChunk
    exec_output: ExecOutput
    goodbye: Goodbye
    credit: Credit
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., pod_status: _Optional[_Union[PodStatusReport, _Mapping]] = ..., pod_terminated: _Optional[_Union[PodTerminated, _Mapping]] = ..., event: _Optional[_Union[EventReport, _Mapping]] = ..., log_chunk: _Optional[_Union[LogChunk, _Mapping]] = ..., exec_output: _Optional[_Union[ExecOutput, _Mapping]] = ..., goodbye: _Optional[_Union[Goodbye, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ...) -> None: ...

class Goodbye(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("node", "heartbeat_interval_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    node: _objects_pb2.Node
    heartbeat_interval_ms: int
    def __init__(self, node: _Optional[_Union[_objects_pb2.Node, _Mapping]] = ..., heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class PodSync(_message.Message):
    __slots__ = ("pods",)
    PODS_FIELD_NUMBER: _ClassVar[int]
    pods: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Pod]
    def __init__(self, pods: _Optional[_Iterable[_Union[_objects_pb2.Pod, _Mapping]]] = ...) -> None: ...

class PodUpsert(_message.Message):
    __slots__ = ("pod",)
    POD_FIELD_NUMBER: _ClassVar[int]
    pod: _objects_pb2.Pod
    def __init__(self, pod: _Optional[_Union[_objects_pb2.Pod, _Mapping]] = ...) -> None: ...

class PodRemove(_message.Message):
    __slots__ = ("namespace", "name", "uid")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    uid: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., uid: _Optional[str] = ...) -> None: ...

class NodeSync(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_objects_pb2.Node, _Mapping]]] = ...) -> None: ...

class ServiceSync(_message.Message):
    __slots__ = ("services", "endpoints")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Service]
    endpoints: _containers.RepeatedCompositeFieldContainer[_objects_pb2.Endpoints]
    def __init__(self, services: _Optional[_Iterable[_Union[_objects_pb2.Service, _Mapping]]] = ..., endpoints: _Optional[_Iterable[_Union[_objects_pb2.Endpoints, _Mapping]]] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("request_id", "namespace", "pod", "container", "follow", "tail_lines", "previous", "window")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    namespace: str
    pod: str
    container: str
    follow: bool
    tail_lines: int
    previous: bool
    window: int
    def __init__(self, request_id: _Optional[str] = ..., namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., follow: _Optional[bool] = ..., tail_lines: _Optional[int] = ..., previous: _Optional[bool] = ..., window: _Optional[int] = ...) -> None: ...

class ExecStart(_message.Message):
    __slots__ = ("request_id", "namespace", "pod", "container", "command", "stdin", "window")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    namespace: str
    pod: str
    container: str
    command: _containers.RepeatedScalarFieldContainer[str]
    stdin: bool
    window: int
    def __init__(self, request_id: _Optional[str] = ..., namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., stdin: _Optional[bool] = ..., window: _Optional[int] = ...) -> None: ...

class ExecInput(_message.Message):
    __slots__ = ("request_id", "data", "eof")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    data: bytes
    eof: bool
    def __init__(self, request_id: _Optional[str] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("request_id", "chunks")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    chunks: int
    def __init__(self, request_id: _Optional[str] = ..., chunks: _Optional[int] = ...) -> None: ...

class MasterMessage(_message.Message):
    __slots__ = ("registered", "pod_sync", "pod_upsert", "pod_remove", "node_sync", "service_sync", "log_request", "exec_start", "exec_input", "cancel", "credit")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    POD_SYNC_FIELD_NUMBER: _ClassVar[int]
    POD_UPSERT_FIELD_NUMBER: _ClassVar[int]
    POD_REMOVE_FIELD_NUMBER: _ClassVar[int]
    NODE_SYNC_FIELD_NUMBER: _ClassVar[int]
    SERVICE_SYNC_FIELD_NUMBER: _ClassVar[int]
    LOG_REQUEST_FIELD_NUMBER: _ClassVar[int]
    EXEC_START_FIELD_NUMBER: _ClassVar[int]
    EXEC_INPUT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    pod_sync: PodSync
    pod_upsert: PodUpsert
    pod_remove: PodRemove
    node_sync: NodeSync
    service_sync: ServiceSync
    log_request: LogRequest
    exec_start: ExecStart
    exec_input: ExecInput
    cancel: Cancel
    credit: Credit
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., pod_sync: _Optional[_Union[PodSync, _Mapping]] = ..., pod_upsert: _Optional[_Union[PodUpsert, _Mapping]] = ..., pod_remove: _Optional[_Union[PodRemove, _Mapping]] = ..., node_sync: _Optional[_Union[NodeSync, _Mapping]] = ..., service_sync: _Optional[_Union[ServiceSync, _Mapping]] = ..., log_request: _Optional[_Union[LogRequest, _Mapping]] = ..., exec_start: _Optional[_Union[ExecStart, _Mapping]] = ..., exec_input: _Optional[_Union[ExecInput, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("namespace", "pod", "container", "follow", "tail_lines", "previous")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    container: str
    follow: bool
    tail_lines: int
    previous: bool
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., follow: _Optional[bool] = ..., tail_lines: _Optional[int] = ..., previous: _Optional[bool] = ...) -> None: ...

class ExecClientMessage(_message.Message):
    __slots__ = ("start", "input")
    START_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    start: ExecStart
    input: ExecInput
    def __init__(self, start: _Optional[_Union[ExecStart, _Mapping]] = ..., input: _Optional[_Union[ExecInput, _Mapping]] = ...) -> None: ...

class ExecServerMessage(_message.Message):
    __slots__ = ("stream", "data", "exited", "exit_code", "error")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stream: int
    data: bytes
    exited: bool
    exit_code: int
    error: str
    def __init__(self, stream: _Optional[int] = ..., data: _Optional[bytes] = ..., exited: _Optional[bool] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...
