/*
 * WireGuard's timers as pure state (see timers.h; whitepaper 6.2 "Transport
 * Message Limits", 6.4 "Handshake Initiation Retransmission", 6.5 "Passive
 * Keepalive"). Threads and locking: none inside; the caller holds the peer's
 * timer lock around every call.
 */
#include "timers.h"

#include <string.h>

void wg_timers_init(struct wg_timers *t, uint64_t persistent_interval_ns)
{
	memset(t, 0, sizeof *t);
	t->persistent_interval = persistent_interval_ns;
}

void wg_timers_stop(struct wg_timers *t)
{
	uint64_t p = t->persistent_interval;
	wg_timers_init(t, p);
}

void wg_timers_on_handshake_initiated(struct wg_timers *t, uint64_t now, uint64_t jitter)
{
	/* 6.4: retry after REKEY_TIMEOUT plus jitter until a response arrives. */
	t->retransmit_at = now + WG_REKEY_TIMEOUT + jitter % WG_REKEY_TIMEOUT_JITTER_MAX;
}

void wg_timers_on_handshake_complete(struct wg_timers *t, uint64_t now)
{
	(void)now;
	t->retransmit_at = 0;
	t->handshake_attempts = 0;
}

void wg_timers_on_session_derived(struct wg_timers *t, uint64_t now)
{
	/* Keys are wiped if no new session follows within 3 x REJECT_AFTER_TIME. */
	t->zero_keys_at = now + 3 * WG_REJECT_AFTER_TIME;
}

void wg_timers_on_peer_started(struct wg_timers *t, uint64_t now)
{
	if (!t->new_handshake_at || t->new_handshake_at > now)
		t->new_handshake_at = now ? now : 1;
}

void wg_timers_on_data_sent(struct wg_timers *t, uint64_t now)
{
	/* 6.5: data sent and no answer within KEEPALIVE + REKEY_TIMEOUT: new handshake. */
	if (!t->new_handshake_at)
		t->new_handshake_at = now + WG_KEEPALIVE_TIMEOUT + WG_REKEY_TIMEOUT;
}

void wg_timers_on_data_received(struct wg_timers *t, uint64_t now)
{
	/* 6.5: data received and nothing to send back: a keepalive after KEEPALIVE_TIMEOUT. */
	if (!t->keepalive_at)
		t->keepalive_at = now + WG_KEEPALIVE_TIMEOUT;
	else
		t->need_another_keepalive = true;
}

void wg_timers_on_authenticated_sent(struct wg_timers *t, uint64_t now)
{
	(void)now;
	t->keepalive_at = 0;
}

void wg_timers_on_authenticated_received(struct wg_timers *t, uint64_t now)
{
	(void)now;
	t->new_handshake_at = 0;
}

void wg_timers_on_traversal(struct wg_timers *t, uint64_t now)
{
	if (t->persistent_interval)
		t->persistent_at = now + t->persistent_interval;
}

static bool fire(uint64_t *at, uint64_t now)
{
	if (*at && *at <= now) {
		*at = 0;
		return true;
	}
	return false;
}

unsigned wg_timers_due(struct wg_timers *t, uint64_t now, uint64_t jitter)
{
	unsigned due = 0;
	if (fire(&t->retransmit_at, now)) {
		if (t->handshake_attempts >= WG_MAX_TIMER_HANDSHAKES) {
			due |= WG_TIMER_GIVE_UP;
			t->handshake_attempts = 0;
			t->new_handshake_at = 0;
			if (!t->zero_keys_at)
				t->zero_keys_at = now + 3 * WG_REJECT_AFTER_TIME;
		} else {
			t->handshake_attempts++;
			due |= WG_TIMER_RETRANSMIT_HANDSHAKE;
			wg_timers_on_handshake_initiated(t, now, jitter);
		}
	}
	if (fire(&t->keepalive_at, now)) {
		due |= WG_TIMER_SEND_KEEPALIVE;
		if (t->need_another_keepalive) {
			t->need_another_keepalive = false;
			t->keepalive_at = now + WG_KEEPALIVE_TIMEOUT;
		}
	}
	if (fire(&t->new_handshake_at, now))
		due |= WG_TIMER_NEW_HANDSHAKE;
	if (fire(&t->zero_keys_at, now))
		due |= WG_TIMER_ZERO_KEYS;
	if (fire(&t->persistent_at, now))
		due |= WG_TIMER_PERSISTENT_KEEPALIVE;
	return due;
}

uint64_t wg_timers_next(const struct wg_timers *t)
{
	uint64_t at[] = {t->retransmit_at, t->keepalive_at, t->new_handshake_at, t->zero_keys_at, t->persistent_at};
	uint64_t m = 0;
	for (unsigned i = 0; i < sizeof at / sizeof at[0]; i++)
		if (at[i] && (!m || at[i] < m))
			m = at[i];
	return m;
}

bool wg_rekey_on_send(uint64_t age, uint64_t send_counter, bool we_initiated)
{
	/* 6.2: after REKEY_AFTER_MESSAGES, or the initiator after REKEY_AFTER_TIME. */
	return send_counter > WG_REKEY_AFTER_MESSAGES || (we_initiated && age > WG_REKEY_AFTER_TIME);
}

bool wg_rekey_on_receive(uint64_t age, bool we_initiated)
{
	/* The initiator renews before the responder would stop accepting. */
	return we_initiated && age > WG_REJECT_AFTER_TIME - WG_KEEPALIVE_TIMEOUT - WG_REKEY_TIMEOUT;
}

bool wg_keypair_expired(uint64_t age, uint64_t counter)
{
	return age >= WG_REJECT_AFTER_TIME || counter >= WG_REJECT_AFTER_MESSAGES;
}

bool wg_handshake_on_unknown_index(bool have_current, uint64_t current_age, uint64_t current_send_counter)
{
	return !have_current || wg_keypair_expired(current_age, current_send_counter);
}

bool wg_initiation_allowed(uint64_t now, uint64_t last_sent, bool retry)
{
	return retry || !last_sent || now - last_sent >= WG_REKEY_TIMEOUT;
}
