"""Payload encryption at rest in workflow history: AES-256-GCM with a key ring.

Not workflow-safe (process assembly). Every payload a worker or client sends
to Temporal (run inputs, activity arguments and results, signals, updates,
activity summaries, failure details) is encrypted with the ring's active key;
failure messages and stack traces are moved into an encoded attribute so they
are encrypted too. Each encrypted payload names its key id, so a ring that
still holds a rotated-out key decrypts the histories written with it.

Keys never travel with the data. They come from, in order:

    AIFACTORY_CODEC_KEYS        `kid=<base64 32 bytes>,kid2=...` (the first is active)
    AIFACTORY_CODEC_KEY_FILE    a JSON file {"active": kid, "keys": {kid: base64, ...}}
    AIFACTORY_HOME/keys/codec.json   the embedded default, created on first use

`AIFACTORY_CODEC=off` turns encryption off (payloads in clear text). Against a
configured cluster (`TEMPORAL_ADDRESS` set) there is no generated key: a
missing key ring is an error, so a production worker never silently writes
clear-text histories.

Workers decode with `WorkerCodec`, which never fails a workflow task on a
payload it cannot open: an undecodable payload (wrong key, altered bytes) or
a clear-text one reaches the workflow marked (`contracts.payloads`), so a bad
signal is refused and recorded while a bad start fails its own run, typed.
Clients decode with `EncryptionCodec`, which raises `KeyRingError`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, EncodingPayloadConverter, PayloadCodec
from temporalio.exceptions import ApplicationError

from activities.keys import KeyRing, KeyRingError, key_ring_from_env
from contracts import errors as E
from contracts import payloads as marked

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
CIPHER = b"AES256-GCM"
NONCE_BYTES = 12


def codec_key_ring(env: Mapping[str, str], home: Path | None, *, embedded: bool, require_home=None) -> KeyRing | None:
    """The payload codec's ring; None when encryption is switched off."""
    if env.get("AIFACTORY_CODEC", "").lower() in ("off", "0", "false", "no"):
        return None
    try:
        return key_ring_from_env(env, home, prefix="AIFACTORY_CODEC", embedded=embedded, require_home=require_home)
    except KeyRingError as e:
        raise KeyRingError(f"{e} (or AIFACTORY_CODEC=off to write clear-text histories)") from None


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload; the key id is bound into the ciphertext as associated data."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._ciphers = {kid: AESGCM(key) for kid, key in ring.keys.items()}

    def encrypt(self, payload: Payload) -> Payload:
        kid = self.ring.active
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(nonce, payload.SerializeToString(), kid.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: kid.encode(), "encryption-cipher": CIPHER}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        kid = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise KeyRingError(f"payload was encrypted with key {kid!r}, which is not in the key ring ({', '.join(self.ring.keys)})")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise KeyRingError(f"payload under key {kid!r} does not authenticate: altered, or a different key with that id") from None
        out = Payload()
        out.ParseFromString(plain)
        return out

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


class WorkerCodec(EncryptionCodec):
    """The workers' codec: what it cannot decrypt, or what came in clear text, goes on marked."""

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return marked.unsealed(payload)
        try:
            return self.decrypt(payload)
        except KeyRingError as e:
            return marked.undecodable(str(e))

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]


class _Unsealed(EncodingPayloadConverter):
    """A clear-text payload a worker marked: typed conversions read the payload inside as it is
    (activity results, markers); the workflow itself refuses a clear-text start or decision."""

    def __init__(self, converters: Mapping[bytes, EncodingPayloadConverter]) -> None:
        self._converters = converters

    @property
    def encoding(self) -> str:
        return marked.UNSEALED.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        inner = marked.unwrap(payload)
        converter = self._converters.get(inner.metadata.get("encoding", b""))
        if converter is None or isinstance(converter, _Unsealed):
            raise ApplicationError(f"clear-text payload of unknown encoding {inner.metadata.get('encoding', b'?')!r}", type=E.PAYLOAD_UNDECODABLE, non_retryable=True)
        return converter.from_payload(inner, type_hint)


class _Undecodable(EncodingPayloadConverter):
    """A payload a worker could not decrypt: converting it fails the run (typed), never the task."""

    @property
    def encoding(self) -> str:
        return marked.UNDECODABLE.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        raise ApplicationError(f"a payload could not be decrypted: {marked.reason(payload)}", type=E.PAYLOAD_UNDECODABLE, non_retryable=True)


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """temporalio's pydantic payload converter, its encoders built once per process.

    The SDK builds a payload converter for each workflow run and twice for every workflow
    activation; the pydantic one compiles a serializer and starts an empty type-adapter cache each
    time, which on the agent workflow costs more CPU than the workflow's own code. These share one
    set of encoders (stateless but for that cache, which then stays warm). Same bytes on the wire.
    """

    _shared: ClassVar[Mapping[bytes, EncodingPayloadConverter] | None] = None

    def __init__(self) -> None:
        shared = SharedPydanticPayloadConverter._shared
        if shared is None:
            super().__init__()
            converters = dict(self.converters)
            converters[marked.UNSEALED] = _Unsealed(converters)
            converters[marked.UNDECODABLE] = _Undecodable()
            self.converters = SharedPydanticPayloadConverter._shared = converters
        else:
            self.converters = shared


#: The factory's payloads: pydantic models as JSON, as `temporalio.contrib.pydantic` writes them.
FACTORY_CONVERTER = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)


def data_converter(ring: KeyRing | None, *, worker: bool = False) -> DataConverter:
    """Pydantic payloads; with a ring, encrypted, and failure messages encoded too. A `worker`
    converter marks what it cannot open instead of raising (see `WorkerCodec`)."""
    if ring is None:
        return FACTORY_CONVERTER
    return dataclasses.replace(
        FACTORY_CONVERTER,
        payload_codec=(WorkerCodec if worker else EncryptionCodec)(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def for_workers(converter: DataConverter) -> DataConverter:
    """`converter` as a worker decodes with: the same keys, marking instead of raising."""
    codec = converter.payload_codec
    if isinstance(codec, EncryptionCodec) and not isinstance(codec, WorkerCodec):
        return dataclasses.replace(converter, payload_codec=WorkerCodec(codec.ring))
    return converter


def key_ids(payloads: Iterable[Payload]) -> set[str]:
    return {p.metadata[KEY_ID].decode() for p in payloads if p.metadata.get("encoding") == ENCODING}
