/*
 * ICMP errors of the send path (see ip.h). Threads and locking: called from
 * any worker's tx pass; the rate limit and IP id are taken under
 * ip->icmp_lock, the rest works on the caller's packet and stack.
 */
#define _GNU_SOURCE
#include "dataplane/ip.h"

#include "tun/vnet.h"

#include <string.h>

void ip_ctx_init(struct ip_ctx *ip, uint32_t local_net, uint8_t local_prefix, uint32_t icmp_source)
{
	ip->local_mask = ip4_mask(local_prefix);
	ip->local_net = local_net & ip->local_mask;
	ip->icmp_source = icmp_source;
	ip->tun_vnet_hdr = false;
	pthread_mutex_init(&ip->icmp_lock, NULL);
	ip->icmp_tokens = ICMP_BURST;
	ip->icmp_id = 0;
	clock_gettime(CLOCK_MONOTONIC, &ip->icmp_last);
}

void ip_ctx_destroy(struct ip_ctx *ip)
{
	pthread_mutex_destroy(&ip->icmp_lock);
}

/* Caller holds icmp_lock. */
static bool icmp_take_token(struct ip_ctx *ip)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double dt = (double)(now.tv_sec - ip->icmp_last.tv_sec) + (double)(now.tv_nsec - ip->icmp_last.tv_nsec) / 1e9;
	ip->icmp_last = now;
	ip->icmp_tokens += dt * ICMP_RATE;
	if (ip->icmp_tokens > ICMP_BURST)
		ip->icmp_tokens = ICMP_BURST;
	if (ip->icmp_tokens < 1.0)
		return false;
	ip->icmp_tokens -= 1.0;
	return true;
}

bool icmp_rate_ok(struct ip_ctx *ip)
{
	pthread_mutex_lock(&ip->icmp_lock);
	bool ok = icmp_take_token(ip);
	pthread_mutex_unlock(&ip->icmp_lock);
	return ok;
}

static bool is_bcast_or_mcast(uint32_t a)
{
	return a == 0xffffffffu || (a >> 28) == 0xe;
}

static bool is_icmp_error_type(uint8_t type)
{
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

void icmp_error(struct ip_ctx *ip, int tun_fd, const uint8_t *orig, size_t len, uint8_t type, uint8_t code,
        uint64_t *cnt)
{
	size_t ihl = (size_t)(orig[0] & 0xf) * 4;
	/* RFC 1122 3.2.2: never about non-first fragments, ICMP errors, broadcast or multicast. */
	if (get16(orig + 6) & 0x1fff)
		return;
	uint32_t saddr = get32(orig + 12), daddr = get32(orig + 16);
	if (is_martian_src(saddr) || is_bcast_or_mcast(daddr))
		return;
	if (orig[9] == 1 && (len <= ihl || is_icmp_error_type(orig[ihl])))
		return;
	if (ip->icmp_source == 0)
		return;
	pthread_mutex_lock(&ip->icmp_lock);
	bool allowed = icmp_take_token(ip);
	uint16_t id = ip->icmp_id++;
	pthread_mutex_unlock(&ip->icmp_lock);
	if (!allowed)
		return;

	uint8_t pkt[ICMP_MAX];
	size_t quote = len < ICMP_MAX - 28 ? len : ICMP_MAX - 28;
	size_t tot = 28 + quote;
	memset(pkt, 0, 28);
	pkt[0] = 0x45;
	pkt[1] = 0xc0; /* internetwork control, as routers mark ICMP errors */
	put16(pkt + 2, (uint16_t)tot);
	put16(pkt + 4, id);
	pkt[8] = 64;
	pkt[9] = 1;
	put32(pkt + 12, ip->icmp_source);
	put32(pkt + 16, saddr);
	ip4_csum_set(pkt);
	pkt[20] = type;
	pkt[21] = code;
	memcpy(pkt + 28, orig, quote);
	put16(pkt + 22, (uint16_t)~csum_fold16(csum_acc(pkt + 20, 8 + quote, 0)));

	if (tun_write1(tun_fd, ip->tun_vnet_hdr, pkt, tot) < 0)
		cnt[DP_TUN_ERRORS]++;
	else
		cnt[DP_ICMP_SENT]++;
}
