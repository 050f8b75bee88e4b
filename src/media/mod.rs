//! Media anchoring: every call's RTP flows through denwa.
//!
//! Owns: the SDP model and the rewrite that puts denwa in the media path
//! ([`sdp`]), the pool of RTP/RTCP port pairs ([`ports`]) and the RTP relay
//! ([`relay`]): a [`MediaEngine`] of worker threads carrying every call.
//!
//! Must not: take call decisions (which codec wins, when to answer 488, when
//! a silent call is dead): the call layer does, from what this module
//! reports. The relay decodes no audio.
//!
//! The signal cores are sans-IO (no sockets, no clock, no tokio; time is an
//! argument): [`g711`] converts between G.711 code words and 16-bit samples,
//! [`tones`] generates call-progress and DTMF tones, [`goertzel`] measures
//! single frequencies, [`dtmf`] turns RFC 4733 packets, SIP INFO bodies and
//! in-band tones into digit events, [`sound`] loads WAV prompts by name and
//! [`player`] plays sounds, tones and silences as 20 ms frames.
//!
//! # How a call uses it
//!
//! A call has two legs, A (caller side) and B (callee side). For each leg
//! the call layer binds a [`MediaEndpoint`] (an even RTP port and RTP + 1
//! for RTCP, taken from the shared [`PortAllocator`]):
//!
//! 1. A's offer arrives: [`sdp::parse`], [`sdp::remote_media`] gives A's
//!    address, [`sdp::rewrite_for_relay`] with B's endpoint address gives the
//!    offer sent to B (an error there means 488 to A).
//! 2. B's answer arrives: the same with A's endpoint address gives the answer
//!    sent to A.
//! 3. [`MediaEngine::start_relay`] takes both endpoints and both SDP
//!    addresses and hands them to a media worker; the returned [`RelayHandle`] is the control plane:
//!    [`RelayHandle::set_remote`] on re-INVITE, [`RelayHandle::stats`] for
//!    media timeouts and call records, [`RelayHandle::tap`] and
//!    [`RelayHandle::set_forwarding`] for recorders, DTMF detectors, players
//!    and conferences, [`RelayHandle::stop`] (or drop) at hang-up, which
//!    closes the sockets and gives the ports back.
//!
//! The relay latches each leg to the real source of its first RTP packet
//! (symmetric RTP), so phones behind NAT work without SDP rewriting on their
//! side; after latching, datagrams from anyone else are dropped and counted.
//! See [`relay`] for the data plane's design and extension points.

pub mod dtmf;
pub mod g711;
pub mod goertzel;
pub mod mixer;
pub mod player;
pub mod ports;
pub mod recording;
pub mod relay;
pub mod rtcp;
pub mod rtp_stream;
pub mod sdp;
pub mod sound;
pub mod tones;

pub use ports::{PortAllocator, PortLease};
pub use relay::{
    Direction, Leg, LegCodec, LegStats, MediaEndpoint, MediaEngine, MediaEvent, MemberHandle,
    RelayHandle, RelayMetrics, RelayReport, RelayStats, SupervisorHandle, TapMode, TapPoint,
    TAP_CAPACITY,
};
pub use sdp::{
    parse, remote_media, rewrite_for_relay, Codec, MediaInfo, SdpError, SessionDescription,
};
