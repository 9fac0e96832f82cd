from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VoiceActivity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOICE_ACTIVITY_UNSPECIFIED: _ClassVar[VoiceActivity]
    VOICE_ACTIVITY_ABSENT: _ClassVar[VoiceActivity]
    VOICE_ACTIVITY_PRESENT: _ClassVar[VoiceActivity]

class ParticipantEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARTICIPANT_EVENT_TYPE_UNSPECIFIED: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_JOIN: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_LEAVE: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_VIDEO_ON: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_VIDEO_OFF: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_AUDIO_MUTED: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_AUDIO_UNMUTED: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_PIN: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_UNPIN: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_ON: _ClassVar[ParticipantEventType]
    PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_OFF: _ClassVar[ParticipantEventType]

class VideoSlot(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_SLOT_MAIN: _ClassVar[VideoSlot]
    VIDEO_SLOT_THUMBNAIL: _ClassVar[VideoSlot]

class SwitchReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SWITCH_REASON_UNSPECIFIED: _ClassVar[SwitchReason]
    SWITCH_REASON_FIRST_SPEAKER: _ClassVar[SwitchReason]
    SWITCH_REASON_DOMINANT_SPEAKER: _ClassVar[SwitchReason]
    SWITCH_REASON_VIDEO_ON: _ClassVar[SwitchReason]
    SWITCH_REASON_VIDEO_OFF: _ClassVar[SwitchReason]
    SWITCH_REASON_LEFT: _ClassVar[SwitchReason]
    SWITCH_REASON_PINNED: _ClassVar[SwitchReason]
    SWITCH_REASON_UNPINNED: _ClassVar[SwitchReason]
VOICE_ACTIVITY_UNSPECIFIED: VoiceActivity
VOICE_ACTIVITY_ABSENT: VoiceActivity
VOICE_ACTIVITY_PRESENT: VoiceActivity
PARTICIPANT_EVENT_TYPE_UNSPECIFIED: ParticipantEventType
PARTICIPANT_EVENT_TYPE_JOIN: ParticipantEventType
PARTICIPANT_EVENT_TYPE_LEAVE: ParticipantEventType
PARTICIPANT_EVENT_TYPE_VIDEO_ON: ParticipantEventType
PARTICIPANT_EVENT_TYPE_VIDEO_OFF: ParticipantEventType
PARTICIPANT_EVENT_TYPE_AUDIO_MUTED: ParticipantEventType
PARTICIPANT_EVENT_TYPE_AUDIO_UNMUTED: ParticipantEventType
PARTICIPANT_EVENT_TYPE_PIN: ParticipantEventType
PARTICIPANT_EVENT_TYPE_UNPIN: ParticipantEventType
PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_ON: ParticipantEventType
PARTICIPANT_EVENT_TYPE_SCREEN_SHARE_OFF: ParticipantEventType
VIDEO_SLOT_MAIN: VideoSlot
VIDEO_SLOT_THUMBNAIL: VideoSlot
SWITCH_REASON_UNSPECIFIED: SwitchReason
SWITCH_REASON_FIRST_SPEAKER: SwitchReason
SWITCH_REASON_DOMINANT_SPEAKER: SwitchReason
SWITCH_REASON_VIDEO_ON: SwitchReason
SWITCH_REASON_VIDEO_OFF: SwitchReason
SWITCH_REASON_LEFT: SwitchReason
SWITCH_REASON_PINNED: SwitchReason
SWITCH_REASON_UNPINNED: SwitchReason

class CloseRoomRequest(_message.Message):
    __slots__ = ("room_id",)
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    def __init__(self, room_id: _Optional[str] = ...) -> None: ...

class CloseRoomResponse(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class ListRoomsRequest(_message.Message):
    __slots__ = ("max_rooms", "after_room_id")
    MAX_ROOMS_FIELD_NUMBER: _ClassVar[int]
    AFTER_ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    max_rooms: int
    after_room_id: str
    def __init__(self, max_rooms: _Optional[int] = ..., after_room_id: _Optional[str] = ...) -> None: ...

class ListRoomsResponse(_message.Message):
    __slots__ = ("rooms", "more")
    ROOMS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    rooms: _containers.RepeatedCompositeFieldContainer[RoomSummary]
    more: bool
    def __init__(self, rooms: _Optional[_Iterable[_Union[RoomSummary, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class RoomSummary(_message.Message):
    __slots__ = ("room_id", "timestamp_ms", "sequence", "speaker_id", "participants")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    timestamp_ms: int
    sequence: int
    speaker_id: str
    participants: int
    def __init__(self, room_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., sequence: _Optional[int] = ..., speaker_id: _Optional[str] = ..., participants: _Optional[int] = ...) -> None: ...

class RtpSource(_message.Message):
    __slots__ = ("ssrc", "room_id", "participant_id", "clock_rate_hz", "audio_level_id", "no_voice_activity", "l16", "source_port", "source_host")
    SSRC_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    CLOCK_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    AUDIO_LEVEL_ID_FIELD_NUMBER: _ClassVar[int]
    NO_VOICE_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    L16_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PORT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_HOST_FIELD_NUMBER: _ClassVar[int]
    ssrc: int
    room_id: str
    participant_id: str
    clock_rate_hz: int
    audio_level_id: int
    no_voice_activity: bool
    l16: bool
    source_port: int
    source_host: str
    def __init__(self, ssrc: _Optional[int] = ..., room_id: _Optional[str] = ..., participant_id: _Optional[str] = ..., clock_rate_hz: _Optional[int] = ..., audio_level_id: _Optional[int] = ..., no_voice_activity: _Optional[bool] = ..., l16: _Optional[bool] = ..., source_port: _Optional[int] = ..., source_host: _Optional[str] = ...) -> None: ...

class UnmapRtpSourceRequest(_message.Message):
    __slots__ = ("ssrc", "source_port", "source_host")
    SSRC_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PORT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_HOST_FIELD_NUMBER: _ClassVar[int]
    ssrc: int
    source_port: int
    source_host: str
    def __init__(self, ssrc: _Optional[int] = ..., source_port: _Optional[int] = ..., source_host: _Optional[str] = ...) -> None: ...

class UnmapRtpSourceResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: RtpSource
    def __init__(self, removed: _Optional[_Union[RtpSource, _Mapping]] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("batch_id", "ticks")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    TICKS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    ticks: _containers.RepeatedCompositeFieldContainer[RoomTick]
    def __init__(self, batch_id: _Optional[int] = ..., ticks: _Optional[_Iterable[_Union[RoomTick, _Mapping]]] = ...) -> None: ...

class RoomTick(_message.Message):
    __slots__ = ("room_id", "timestamp_ms", "duration_ms", "events", "audio", "levels", "config")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    timestamp_ms: int
    duration_ms: int
    events: _containers.RepeatedCompositeFieldContainer[ParticipantEvent]
    audio: _containers.RepeatedCompositeFieldContainer[ParticipantAudio]
    levels: LevelVector
    config: RoomConfig
    def __init__(self, room_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., duration_ms: _Optional[int] = ..., events: _Optional[_Iterable[_Union[ParticipantEvent, _Mapping]]] = ..., audio: _Optional[_Iterable[_Union[ParticipantAudio, _Mapping]]] = ..., levels: _Optional[_Union[LevelVector, _Mapping]] = ..., config: _Optional[_Union[RoomConfig, _Mapping]] = ...) -> None: ...

class ParticipantAudio(_message.Message):
    __slots__ = ("participant_id", "level", "pcm")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    level: AudioLevel
    pcm: PcmFrame
    def __init__(self, participant_id: _Optional[str] = ..., level: _Optional[_Union[AudioLevel, _Mapping]] = ..., pcm: _Optional[_Union[PcmFrame, _Mapping]] = ...) -> None: ...

class AudioLevel(_message.Message):
    __slots__ = ("level", "voice")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    level: int
    voice: VoiceActivity
    def __init__(self, level: _Optional[int] = ..., voice: _Optional[_Union[VoiceActivity, str]] = ...) -> None: ...

class PcmFrame(_message.Message):
    __slots__ = ("samples", "sample_rate_hz")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    samples: bytes
    sample_rate_hz: int
    def __init__(self, samples: _Optional[bytes] = ..., sample_rate_hz: _Optional[int] = ...) -> None: ...

class LevelVector(_message.Message):
    __slots__ = ("roster", "levels")
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    roster: _containers.RepeatedScalarFieldContainer[str]
    levels: bytes
    def __init__(self, roster: _Optional[_Iterable[str]] = ..., levels: _Optional[bytes] = ...) -> None: ...

class ParticipantEvent(_message.Message):
    __slots__ = ("participant_id", "type")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    type: ParticipantEventType
    def __init__(self, participant_id: _Optional[str] = ..., type: _Optional[_Union[ParticipantEventType, str]] = ...) -> None: ...

class RoomConfig(_message.Message):
    __slots__ = ("profile", "hold_ms", "min_speech_ms", "interrupt_ms", "switch_margin_db", "active_speakers", "active_speakers_interval_ms", "forwarding_size", "forwarding_min_ms", "speaking_interval_ms", "no_audio_timeout_ms", "algorithm", "outlast_ms")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    HOLD_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEECH_MS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_MS_FIELD_NUMBER: _ClassVar[int]
    SWITCH_MARGIN_DB_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SPEAKERS_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    FORWARDING_SIZE_FIELD_NUMBER: _ClassVar[int]
    FORWARDING_MIN_MS_FIELD_NUMBER: _ClassVar[int]
    SPEAKING_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    NO_AUDIO_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    OUTLAST_MS_FIELD_NUMBER: _ClassVar[int]
    profile: str
    hold_ms: int
    min_speech_ms: int
    interrupt_ms: int
    switch_margin_db: float
    active_speakers: int
    active_speakers_interval_ms: int
    forwarding_size: int
    forwarding_min_ms: int
    speaking_interval_ms: int
    no_audio_timeout_ms: int
    algorithm: str
    outlast_ms: int
    def __init__(self, profile: _Optional[str] = ..., hold_ms: _Optional[int] = ..., min_speech_ms: _Optional[int] = ..., interrupt_ms: _Optional[int] = ..., switch_margin_db: _Optional[float] = ..., active_speakers: _Optional[int] = ..., active_speakers_interval_ms: _Optional[int] = ..., forwarding_size: _Optional[int] = ..., forwarding_min_ms: _Optional[int] = ..., speaking_interval_ms: _Optional[int] = ..., no_audio_timeout_ms: _Optional[int] = ..., algorithm: _Optional[str] = ..., outlast_ms: _Optional[int] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("batch_id", "events", "rejections", "events_omitted")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_OMITTED_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    events: _containers.RepeatedCompositeFieldContainer[RoomEvent]
    rejections: _containers.RepeatedCompositeFieldContainer[Rejection]
    events_omitted: int
    def __init__(self, batch_id: _Optional[int] = ..., events: _Optional[_Iterable[_Union[RoomEvent, _Mapping]]] = ..., rejections: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ..., events_omitted: _Optional[int] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("code", "tick_index", "room_id", "field", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    TICK_INDEX_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    tick_index: int
    room_id: str
    field: str
    message: str
    def __init__(self, code: _Optional[int] = ..., tick_index: _Optional[int] = ..., room_id: _Optional[str] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RoomEvent(_message.Message):
    __slots__ = ("room_id", "sequence", "timestamp_ms", "switch", "floor_change", "active_speakers", "speaking_changed", "snapshot", "presentation", "forwarding", "room_closed")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SWITCH_FIELD_NUMBER: _ClassVar[int]
    FLOOR_CHANGE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    SPEAKING_CHANGED_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    PRESENTATION_FIELD_NUMBER: _ClassVar[int]
    FORWARDING_FIELD_NUMBER: _ClassVar[int]
    ROOM_CLOSED_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    sequence: int
    timestamp_ms: int
    switch: Switch
    floor_change: FloorChange
    active_speakers: ActiveSpeakers
    speaking_changed: SpeakingChanged
    snapshot: RoomState
    presentation: PresentationChanged
    forwarding: ForwardingChanged
    room_closed: RoomClosed
    def __init__(self, room_id: _Optional[str] = ..., sequence: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., switch: _Optional[_Union[Switch, _Mapping]] = ..., floor_change: _Optional[_Union[FloorChange, _Mapping]] = ..., active_speakers: _Optional[_Union[ActiveSpeakers, _Mapping]] = ..., speaking_changed: _Optional[_Union[SpeakingChanged, _Mapping]] = ..., snapshot: _Optional[_Union[RoomState, _Mapping]] = ..., presentation: _Optional[_Union[PresentationChanged, _Mapping]] = ..., forwarding: _Optional[_Union[ForwardingChanged, _Mapping]] = ..., room_closed: _Optional[_Union[RoomClosed, _Mapping]] = ...) -> None: ...

class RoomClosed(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Switch(_message.Message):
    __slots__ = ("speaker_id", "previous_speaker_id", "reason", "score", "audio_speaker_id", "speech_onset_ms", "slot")
    SPEAKER_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SPEAKER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SPEAKER_ID_FIELD_NUMBER: _ClassVar[int]
    SPEECH_ONSET_MS_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    speaker_id: str
    previous_speaker_id: str
    reason: SwitchReason
    score: float
    audio_speaker_id: str
    speech_onset_ms: int
    slot: VideoSlot
    def __init__(self, speaker_id: _Optional[str] = ..., previous_speaker_id: _Optional[str] = ..., reason: _Optional[_Union[SwitchReason, str]] = ..., score: _Optional[float] = ..., audio_speaker_id: _Optional[str] = ..., speech_onset_ms: _Optional[int] = ..., slot: _Optional[_Union[VideoSlot, str]] = ...) -> None: ...

class FloorChange(_message.Message):
    __slots__ = ("speaker_id", "previous_speaker_id", "has_video", "score", "speech_onset_ms")
    SPEAKER_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SPEAKER_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_VIDEO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SPEECH_ONSET_MS_FIELD_NUMBER: _ClassVar[int]
    speaker_id: str
    previous_speaker_id: str
    has_video: bool
    score: float
    speech_onset_ms: int
    def __init__(self, speaker_id: _Optional[str] = ..., previous_speaker_id: _Optional[str] = ..., has_video: _Optional[bool] = ..., score: _Optional[float] = ..., speech_onset_ms: _Optional[int] = ...) -> None: ...

class PresentationChanged(_message.Message):
    __slots__ = ("presenter_id", "previous_presenter_id")
    PRESENTER_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_PRESENTER_ID_FIELD_NUMBER: _ClassVar[int]
    presenter_id: str
    previous_presenter_id: str
    def __init__(self, presenter_id: _Optional[str] = ..., previous_presenter_id: _Optional[str] = ...) -> None: ...

class ForwardingChanged(_message.Message):
    __slots__ = ("participant_ids",)
    PARTICIPANT_IDS_FIELD_NUMBER: _ClassVar[int]
    participant_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, participant_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ActiveSpeakers(_message.Message):
    __slots__ = ("speakers",)
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    speakers: _containers.RepeatedCompositeFieldContainer[RankedSpeaker]
    def __init__(self, speakers: _Optional[_Iterable[_Union[RankedSpeaker, _Mapping]]] = ...) -> None: ...

class RankedSpeaker(_message.Message):
    __slots__ = ("participant_id", "level_dbov", "speaking", "activity")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_DBOV_FIELD_NUMBER: _ClassVar[int]
    SPEAKING_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    level_dbov: float
    speaking: bool
    activity: float
    def __init__(self, participant_id: _Optional[str] = ..., level_dbov: _Optional[float] = ..., speaking: _Optional[bool] = ..., activity: _Optional[float] = ...) -> None: ...

class SpeakingChanged(_message.Message):
    __slots__ = ("participant_id", "speaking")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEAKING_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    speaking: bool
    def __init__(self, participant_id: _Optional[str] = ..., speaking: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("room_id", "wait_for_room", "after_sequence")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_ROOM_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    wait_for_room: bool
    after_sequence: int
    def __init__(self, room_id: _Optional[str] = ..., wait_for_room: _Optional[bool] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class GetRoomRequest(_message.Message):
    __slots__ = ("room_id",)
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    def __init__(self, room_id: _Optional[str] = ...) -> None: ...

class RoomState(_message.Message):
    __slots__ = ("room_id", "timestamp_ms", "sequence", "speaker_id", "audio_speaker_id", "pinned_id", "participants", "active_speakers", "config", "presenter_id", "forwarding", "roster")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SPEAKER_ID_FIELD_NUMBER: _ClassVar[int]
    PINNED_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PRESENTER_ID_FIELD_NUMBER: _ClassVar[int]
    FORWARDING_FIELD_NUMBER: _ClassVar[int]
    ROSTER_FIELD_NUMBER: _ClassVar[int]
    room_id: str
    timestamp_ms: int
    sequence: int
    speaker_id: str
    audio_speaker_id: str
    pinned_id: str
    participants: _containers.RepeatedCompositeFieldContainer[ParticipantState]
    active_speakers: _containers.RepeatedCompositeFieldContainer[RankedSpeaker]
    config: RoomConfig
    presenter_id: str
    forwarding: _containers.RepeatedScalarFieldContainer[str]
    roster: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, room_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., sequence: _Optional[int] = ..., speaker_id: _Optional[str] = ..., audio_speaker_id: _Optional[str] = ..., pinned_id: _Optional[str] = ..., participants: _Optional[_Iterable[_Union[ParticipantState, _Mapping]]] = ..., active_speakers: _Optional[_Iterable[_Union[RankedSpeaker, _Mapping]]] = ..., config: _Optional[_Union[RoomConfig, _Mapping]] = ..., presenter_id: _Optional[str] = ..., forwarding: _Optional[_Iterable[str]] = ..., roster: _Optional[_Iterable[str]] = ...) -> None: ...

class ParticipantState(_message.Message):
    __slots__ = ("participant_id", "speaking", "level_dbov", "noise_floor_dbov", "video", "muted", "screen_share", "last_spoke_at_ms")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEAKING_FIELD_NUMBER: _ClassVar[int]
    LEVEL_DBOV_FIELD_NUMBER: _ClassVar[int]
    NOISE_FLOOR_DBOV_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    SCREEN_SHARE_FIELD_NUMBER: _ClassVar[int]
    LAST_SPOKE_AT_MS_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    speaking: bool
    level_dbov: float
    noise_floor_dbov: float
    video: bool
    muted: bool
    screen_share: bool
    last_spoke_at_ms: int
    def __init__(self, participant_id: _Optional[str] = ..., speaking: _Optional[bool] = ..., level_dbov: _Optional[float] = ..., noise_floor_dbov: _Optional[float] = ..., video: _Optional[bool] = ..., muted: _Optional[bool] = ..., screen_share: _Optional[bool] = ..., last_spoke_at_ms: _Optional[int] = ...) -> None: ...
