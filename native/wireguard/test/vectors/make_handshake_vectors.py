#!/usr/bin/python3
"""
Known-answer vectors of a whole WireGuard handshake, computed independently
of native/wireguard, for handshake_kat_test.c.

Written from the WireGuard whitepaper (section 5.4: "Protocol & Cryptography",
5.4.2 initiation, 5.4.3 response, 5.4.4 mac1/mac2, 5.4.5 transport keys,
5.4.6 transport messages, 5.4.7 cookie reply) and draft-irtf-cfrg-xchacha-03
for XChaCha20-Poly1305. It shares no code with native/wireguard: BLAKE2s,
keyed BLAKE2s and HMAC come from Python's hashlib/hmac, X25519 and
ChaCha20-Poly1305 from pyca/cryptography (OpenSSL underneath, but through a
different API and with none of crypto.c's glue: nonce layout, HKDF steps,
HChaCha20 are redone here).

Needs Python 3 with `cryptography` (Debian: python3-cryptography; tested with
38.0.4 under /usr/bin/python3 and 48.0.0). Regenerate and audit:

    /usr/bin/python3 native/wireguard/test/vectors/make_handshake_vectors.py
    git diff --exit-code native/wireguard/test/vectors/handshake_vectors.h

Every input is fixed (derived from a label by BLAKE2s, so anyone can redo
them); the output is deterministic.
"""
import hashlib
import hmac
import os
import struct
import sys

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# ---- primitives (whitepaper 5.4, "Primitives") -----------------------------


def HASH(*parts):
    """Hash(x): BLAKE2s with a 32-byte digest."""
    return hashlib.blake2s(b"".join(parts), digest_size=32).digest()


def MAC(key, data):
    """Mac(key, x): keyed BLAKE2s with a 16-byte digest (parameter block, not a truncation)."""
    return hashlib.blake2s(data, digest_size=16, key=key).digest()


def HMAC(key, data):
    """Hmac(key, x): RFC 2104 HMAC over BLAKE2s-256."""
    return hmac.new(key, data, hashlib.blake2s).digest()


def KDF(n, key, data):
    """Kdf_n(key, x): tau0 = Hmac(key, x); tau1 = Hmac(tau0, 0x1); tau_i = Hmac(tau0, tau_{i-1} || i)."""
    t0 = HMAC(key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = HMAC(t0, prev + bytes([i]))
        out.append(prev)
    return out


def clamp(k):
    k = bytearray(k)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return bytes(k)


def PUB(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def DH(priv, pub):
    return X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(pub))


def AEAD(key, counter, plaintext, ad):
    """Aead(key, counter, plain, auth): ChaCha20-Poly1305, nonce = 32 zero bits || 64-bit LE counter."""
    return ChaCha20Poly1305(key).encrypt(b"\0" * 4 + struct.pack("<Q", counter), plaintext, ad)


def HCHACHA20(key, nonce16):
    """
    HChaCha20 (draft-irtf-cfrg-xchacha-03 section 2.2) from a plain ChaCha20
    keystream block: cryptography's ChaCha20 takes a 16-byte "nonce" that is
    state words 12..15 (block counter || nonce), exactly HChaCha20's input
    words. A block is rounds(state) + state; HChaCha20 is words 0..3 and
    12..15 of rounds(state), so subtract the known input words (the
    constants and the nonce) mod 2^32. Checked against the draft's 2.2.1 vector below.
    """
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(b"\0" * 64)
    words = struct.unpack("<16I", block)
    consts = struct.unpack("<4I", b"expand 32-byte k")
    n = struct.unpack("<4I", nonce16)
    out = [(words[i] - consts[i]) % 2**32 for i in range(4)]
    out += [(words[12 + i] - n[i]) % 2**32 for i in range(4)]
    return struct.pack("<8I", *out)


def XAEAD(key, nonce24, plaintext, ad):
    """XChaCha20-Poly1305: subkey = HChaCha20(key, nonce[0:16]); ChaCha20-Poly1305 with 0^4 || nonce[16:24]."""
    return ChaCha20Poly1305(HCHACHA20(key, nonce24[:16])).encrypt(b"\0" * 4 + nonce24[16:], plaintext, ad)


def self_check():
    assert HCHACHA20(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927")) == bytes.fromhex(
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"), "HChaCha20 (xchacha draft 2.2.1)"
    ladies = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
              b"sunscreen would be it.")
    ct = XAEAD(bytes(range(0x80, 0xa0)), bytes(range(0x40, 0x58)), ladies, bytes.fromhex("50515253c0c1c2c3c4c5c6c7"))
    assert ct.hex().startswith("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"), "XChaCha (draft A.3.1)"
    assert ct[-16:].hex() == "c0875924c1c7987947deafd8780acf49", "XChaCha tag (draft A.3.1)"
    assert HASH(b"abc").hex() == "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982", "BLAKE2s (RFC 7693 B)"


# ---- protocol (whitepaper 5.4.2 - 5.4.7) ----------------------------------

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"


def fixed(label, n=32):
    return hashlib.blake2s(b"rudder handshake KAT: " + label.encode(), digest_size=n).digest()


def macs(msg_without_macs, receiver_pub, cookie=None):
    """5.4.4: mac1 = Mac(Hash(Label-Mac1 || S_pub of the receiver), msg_alpha); mac2 = Mac(cookie, msg_beta) or zeros."""
    mac1 = MAC(HASH(LABEL_MAC1, receiver_pub), msg_without_macs)
    mac2 = MAC(cookie, msg_without_macs + mac1) if cookie else b"\0" * 16
    return msg_without_macs + mac1 + mac2


def initiation(s_i_priv, s_r_pub, e_i_priv, sender, timestamp, cookie=None):
    """5.4.2, the initiator's side. Returns (message, C, H) with C, H after the message."""
    s_i_pub = PUB(s_i_priv)
    C = HASH(CONSTRUCTION)
    H = HASH(C, IDENTIFIER)
    H = HASH(H, s_r_pub)
    e_i_pub = PUB(e_i_priv)
    (C,) = KDF(1, C, e_i_pub)
    H = HASH(H, e_i_pub)
    C, k = KDF(2, C, DH(e_i_priv, s_r_pub))
    static = AEAD(k, 0, s_i_pub, H)
    H = HASH(H, static)
    C, k = KDF(2, C, DH(s_i_priv, s_r_pub))
    ts = AEAD(k, 0, timestamp, H)
    H = HASH(H, ts)
    body = struct.pack("<B3xI", 1, sender) + e_i_pub + static + ts
    assert len(body) == 116
    return macs(body, s_r_pub, cookie), C, H


def response(C, H, s_r_priv, s_i_pub, e_i_pub, e_r_priv, sender, receiver, psk):
    """5.4.3, the responder's side, from the state (C, H) after the initiation. Returns (message, C)."""
    e_r_pub = PUB(e_r_priv)
    (C,) = KDF(1, C, e_r_pub)
    H = HASH(H, e_r_pub)
    (C,) = KDF(1, C, DH(e_r_priv, e_i_pub))
    (C,) = KDF(1, C, DH(e_r_priv, s_i_pub))
    C, tau, k = KDF(3, C, psk)
    H = HASH(H, tau)
    empty = AEAD(k, 0, b"", H)
    H = HASH(H, empty)
    body = struct.pack("<B3xII", 2, sender, receiver) + e_r_pub + empty
    assert len(body) == 60
    return macs(body, s_i_pub), C


def response_as_initiator(C, H, msg, s_i_priv, e_i_priv, psk):
    """5.4.3 as the initiator redoes it from the received response (a second derivation, checked equal)."""
    e_r_pub = msg[12:44]
    (C,) = KDF(1, C, e_r_pub)
    H = HASH(H, e_r_pub)
    (C,) = KDF(1, C, DH(e_i_priv, e_r_pub))
    (C,) = KDF(1, C, DH(s_i_priv, e_r_pub))
    C, tau, k = KDF(3, C, psk)
    H = HASH(H, tau)
    assert AEAD(k, 0, b"", H) == msg[44:60], "the response's empty AEAD"
    return C


def transport(key, receiver, counter, payload):
    """5.4.6: P padded with zeros to a multiple of 16 (below any MTU here); empty AD."""
    padded = payload + b"\0" * (-len(payload) % 16)
    return struct.pack("<B3xIQ", 4, receiver, counter) + AEAD(key, counter, padded, b"")


def cookie_reply(msg, s_r_pub, secret, src, nonce24):
    """5.4.7: cookie = Mac(R_m, source); reply = type 3, receiver = the message's sender, nonce,
    Xaead(Hash(Label-Cookie || S_pub of the replier), nonce, cookie, AD = the message's mac1)."""
    cookie = MAC(secret, src)
    mac1 = msg[-32:-16]
    enc = XAEAD(HASH(LABEL_COOKIE, s_r_pub), nonce24, cookie, mac1)
    reply = struct.pack("<B3x", 3) + msg[4:8] + nonce24 + enc
    assert len(reply) == 64
    return reply, cookie


# ---- the vectors ----------------------------------------------------------


def vector(name, with_psk, with_cookie):
    s_i_priv = clamp(fixed("initiator static"))
    s_r_priv = clamp(fixed("responder static"))
    e_i_priv = clamp(fixed(name + " initiator ephemeral"))
    e_r_priv = clamp(fixed(name + " responder ephemeral"))
    psk = fixed(name + " psk") if with_psk else None
    s_i_pub, s_r_pub, e_i_pub = PUB(s_i_priv), PUB(s_r_priv), PUB(e_i_priv)
    i_index = struct.unpack("<I", fixed(name + " initiator index", 4))[0]
    r_index = struct.unpack("<I", fixed(name + " responder index", 4))[0]
    # TAI64N: 2^62 + 1,700,000,000 s, 2^24 * 3 ns (on wireguard's 2^24 ns grid)
    timestamp = struct.pack(">QI", 2**62 + 1700000000, 3 << 24)
    payload_i = bytes(range(37))  # not a multiple of 16: 11 bytes of padding
    payload_r = bytes(range(0xff, 0xff - 20, -1))

    init, C, H = initiation(s_i_priv, s_r_pub, e_i_priv, i_index, timestamp)
    # The responder redoes the initiation's state from the message alone.
    C_r = HASH(CONSTRUCTION)
    H_r = HASH(HASH(C_r, IDENTIFIER), s_r_pub)
    (C_r,) = KDF(1, C_r, init[8:40])
    H_r = HASH(H_r, init[8:40])
    C_r, k = KDF(2, C_r, DH(s_r_priv, init[8:40]))
    assert ChaCha20Poly1305(k).decrypt(b"\0" * 12, init[40:88], H_r) == s_i_pub
    H_r = HASH(H_r, init[40:88])
    C_r, k = KDF(2, C_r, DH(s_r_priv, s_i_pub))
    assert ChaCha20Poly1305(k).decrypt(b"\0" * 12, init[88:116], H_r) == timestamp
    H_r = HASH(H_r, init[88:116])
    assert (C_r, H_r) == (C, H)

    resp, C_resp = response(C, H, s_r_priv, s_i_pub, e_i_pub, e_r_priv, r_index, i_index, psk or b"\0" * 32)
    C_init = response_as_initiator(C, H, resp, s_i_priv, e_i_priv, psk or b"\0" * 32)
    assert C_init == C_resp
    # 5.4.5: (T_send_i = T_recv_r, T_recv_i = T_send_r) = Kdf2(C, empty)
    t_send_i, t_recv_i = KDF(2, C_init, b"")

    v = dict(
        name=name,
        initiator_static_private=s_i_priv,
        responder_static_private=s_r_priv,
        initiator_static_public=s_i_pub,
        responder_static_public=s_r_pub,
        initiator_ephemeral_private=e_i_priv,
        responder_ephemeral_private=e_r_priv,
        psk=psk,
        initiator_index=i_index,
        responder_index=r_index,
        timestamp=timestamp,
        initiation=init,
        response=resp,
        initiator_send=t_send_i,
        initiator_recv=t_recv_i,
        responder_send=t_recv_i,
        responder_recv=t_send_i,
        payload_i2r=payload_i,
        payload_r2i=payload_r,
        # counter 0 each way, then the initiator's keepalive at counter 1
        transport_i2r=transport(t_send_i, r_index, 0, payload_i),
        transport_r2i=transport(t_recv_i, i_index, 0, payload_r),
        keepalive_i2r=transport(t_send_i, r_index, 1, b""),
    )
    if with_cookie:
        secret = fixed(name + " cookie secret")
        src = bytes([198, 18, 0, 1, 0xca, 0x6c])  # 198.18.0.1, port 51820 big-endian
        nonce = fixed(name + " cookie nonce", 24)
        reply, cookie = cookie_reply(init, s_r_pub, secret, src, nonce)
        init_mac2, _, _ = initiation(s_i_priv, s_r_pub, e_i_priv, i_index, timestamp, cookie)
        assert init_mac2[:132] == init[:132]
        v.update(cookie_secret=secret, cookie_source=src, cookie_nonce=nonce, cookie=cookie,
                 cookie_reply=reply, initiation_mac2=init_mac2)
    return v


FIELDS = [
    ("name", "const char *"),
    ("initiator_static_private", "hex"), ("responder_static_private", "hex"),
    ("initiator_static_public", "hex"), ("responder_static_public", "hex"),
    ("initiator_ephemeral_private", "hex"), ("responder_ephemeral_private", "hex"),
    ("psk", "hex"), ("initiator_index", "u32"), ("responder_index", "u32"), ("timestamp", "hex"),
    ("initiation", "hex"), ("response", "hex"),
    ("initiator_send", "hex"), ("initiator_recv", "hex"), ("responder_send", "hex"), ("responder_recv", "hex"),
    ("payload_i2r", "hex"), ("payload_r2i", "hex"),
    ("transport_i2r", "hex"), ("transport_r2i", "hex"), ("keepalive_i2r", "hex"),
    ("cookie_secret", "hex"), ("cookie_source", "hex"), ("cookie_nonce", "hex"), ("cookie", "hex"),
    ("cookie_reply", "hex"), ("initiation_mac2", "hex"),
]


def c_hex(b):
    if b is None:
        return "NULL"
    h = b.hex()
    if len(h) <= 64:
        return '"%s"' % h
    return "\n\t\t\t".join('"%s"' % h[i:i + 64] for i in range(0, len(h), 64))


def header(vectors):
    out = [
        "/*",
        " * GENERATED by make_handshake_vectors.py (same directory): do not edit.",
        " * Whole WireGuard handshakes computed by an independent Python reference",
        " * (whitepaper 5.4); byte strings as hex, NULL when absent (no PSK, no cookie).",
        " * Threads and locking: constant data.",
        " */",
        "#ifndef RUDDER_WG_HANDSHAKE_VECTORS_H",
        "#define RUDDER_WG_HANDSHAKE_VECTORS_H",
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "struct hs_vector {",
    ]
    for f, t in FIELDS:
        out.append("\t%s%s;" % ("uint32_t " if t == "u32" else "const char *", f))
    out += ["};", "", "// clang-format off", "static const struct hs_vector HS_VECTORS[] = {"]
    for v in vectors:
        out.append("\t{")
        for f, t in FIELDS:
            x = v.get(f)
            if t == "u32":
                s = "0x%08x" % x
            elif f == "name":
                s = '"%s"' % x
            else:
                s = c_hex(x)
            out.append("\t\t.%s = %s," % (f, s))
        out.append("\t},")
    out += ["};", "// clang-format on", "", "#endif", ""]
    return "\n".join(out)


def main():
    self_check()
    vectors = [vector("no psk", False, True), vector("psk", True, False)]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "handshake_vectors.h")
    with open(path, "w") as f:
        f.write(header(vectors))
    print("wrote %s (%d vectors)" % (path, len(vectors)), file=sys.stderr)


if __name__ == "__main__":
    main()
