/*
 * WireGuard's protocol constants (whitepaper section 6.1, "Preliminaries",
 * and 6.2-6.5) and its timers as pure decision logic: every function takes
 * `now` (CLOCK_MONOTONIC nanoseconds, from the caller) and returns what is
 * due; nothing here reads a clock, sleeps or owns a thread. The data plane
 * calls the wg_timers_on_*() event functions where wireguard-go would arm or
 * cancel a timer, and asks wg_timers_due() (at the time wg_timers_next()
 * says, or on any tick) which actions to perform.
 *
 * Threads and locking: a struct wg_timers belongs to one peer and is guarded
 * by that peer's timer lock, held by the caller around every call (events
 * come from both the send and the receive path). The pure predicates
 * (wg_rekey_on_send() etc.) touch no shared state.
 */
#ifndef RUDDER_WG_TIMERS_H
#define RUDDER_WG_TIMERS_H

#include <stdbool.h>
#include <stdint.h>

#define WG_NS_PER_S 1000000000ULL
#define WG_REKEY_AFTER_MESSAGES (1ULL << 60)
#define WG_REJECT_AFTER_MESSAGES (UINT64_MAX - (1ULL << 13)) /* 2^64 - 2^13 - 1 */
#define WG_REKEY_AFTER_TIME (120 * WG_NS_PER_S)
#define WG_REJECT_AFTER_TIME (180 * WG_NS_PER_S)
#define WG_REKEY_ATTEMPT_TIME (90 * WG_NS_PER_S)
#define WG_REKEY_TIMEOUT (5 * WG_NS_PER_S)
#define WG_REKEY_TIMEOUT_JITTER_MAX (WG_NS_PER_S / 3) /* up to 333 ms added to each retry */
#define WG_KEEPALIVE_TIMEOUT (10 * WG_NS_PER_S)
#define WG_COOKIE_REFRESH_TIME (120 * WG_NS_PER_S)
#define WG_HANDSHAKE_INITIATION_RATE (WG_NS_PER_S / 50) /* at most one accepted initiation per 20 ms per peer */
#define WG_MAX_TIMER_HANDSHAKES (WG_REKEY_ATTEMPT_TIME / WG_REKEY_TIMEOUT) /* 18 */

/* Actions wg_timers_due() can return (a bit mask). */
enum {
	WG_TIMER_RETRANSMIT_HANDSHAKE = 1 << 0, /* send a new initiation (attempt counted) */
	WG_TIMER_GIVE_UP = 1 << 1, /* 90 s of attempts failed: drop queued packets */
	WG_TIMER_SEND_KEEPALIVE = 1 << 2, /* data received, nothing sent back for 10 s */
	WG_TIMER_NEW_HANDSHAKE = 1 << 3, /* data sent, nothing received for 15 s */
	WG_TIMER_ZERO_KEYS = 1 << 4, /* no new session for 540 s: wipe every keypair */
	WG_TIMER_PERSISTENT_KEEPALIVE = 1 << 5, /* the configured interval passed without traffic */
};

/* Deadlines in monotonic ns; 0 = not armed. */
struct wg_timers {
	uint64_t retransmit_at, keepalive_at, new_handshake_at, zero_keys_at, persistent_at;
	uint32_t handshake_attempts;
	bool need_another_keepalive;
	uint64_t persistent_interval; /* 0 = off; from the config, in ns */
};

void wg_timers_init(struct wg_timers *t, uint64_t persistent_interval_ns);

/* Events (where wireguard-go arms or cancels its timers). `jitter` is a random
 * value in [0, WG_REKEY_TIMEOUT_JITTER_MAX) from the caller's RNG. */
void wg_timers_on_handshake_initiated(struct wg_timers *t, uint64_t now, uint64_t jitter);
void wg_timers_on_handshake_complete(struct wg_timers *t, uint64_t now);
void wg_timers_on_session_derived(struct wg_timers *t, uint64_t now);
void wg_timers_on_data_sent(struct wg_timers *t, uint64_t now);
void wg_timers_on_data_received(struct wg_timers *t, uint64_t now);
void wg_timers_on_authenticated_sent(struct wg_timers *t, uint64_t now); /* any packet incl. keepalive */
void wg_timers_on_authenticated_received(struct wg_timers *t, uint64_t now); /* any packet incl. keepalive */
void wg_timers_on_traversal(struct wg_timers *t, uint64_t now); /* any authenticated packet, either way */
/* A restarted data plane got this peer, which may still hold a session with
 * the old run: a new handshake is due at once (sent by the caller's timer
 * pass, subject to the REKEY_TIMEOUT rate limit). */
void wg_timers_on_peer_started(struct wg_timers *t, uint64_t now);
/* Stop every timer (peer removed or keys zeroed). */
void wg_timers_stop(struct wg_timers *t);

/*
 * Which actions are due at `now`; each returned timer is disarmed (the
 * caller performs the action, which re-arms through the event functions).
 * RETRANSMIT_HANDSHAKE and GIVE_UP are exclusive; after GIVE_UP the
 * ZERO_KEYS deadline is armed as in wireguard-go.
 */
unsigned wg_timers_due(struct wg_timers *t, uint64_t now, uint64_t jitter);
/* The earliest armed deadline, or 0 when nothing is armed. */
uint64_t wg_timers_next(const struct wg_timers *t);

/* Pure predicates on a keypair's age (now - birth), counter and role. */
bool wg_rekey_on_send(uint64_t age, uint64_t send_counter, bool we_initiated);
bool wg_rekey_on_receive(uint64_t age, bool we_initiated);
bool wg_keypair_expired(uint64_t age, uint64_t counter);
/*
 * A transport message from the peer's pinned endpoint carries a receiver
 * index none of our keypairs has: the peer holds a session we lost (we
 * restarted). True when we have no usable session of our own (`current` is
 * absent, or past its age or message limit), so a handshake should start now
 * instead of waiting for the peer's 15 s "no reply" timer.
 */
bool wg_handshake_on_unknown_index(bool have_current, uint64_t current_age, uint64_t current_send_counter);
/* Whether an initiation may go at `now`: a retry always; otherwise at most one
 * per REKEY_TIMEOUT after `last_sent` (the last initiation or response; 0 = none). */
bool wg_initiation_allowed(uint64_t now, uint64_t last_sent, bool retry);

#endif
