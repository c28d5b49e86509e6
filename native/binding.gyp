{
  "targets": [
    {
      "target_name": "rudder_native",
      "sources": [
        "addon/addon.c",
        "addon/convert.c",
        "addon/dataplane.c",
        "addon/notify.c",
        "addon/netlink.c",
        "dataplane/counters.c",
        "dataplane/ip.c",
        "dataplane/ip6.c",
        "dataplane/lifecycle.c",
        "dataplane/receive.c",
        "dataplane/routes.c",
        "dataplane/send.c",
        "dataplane/wait.c",
        "dataplane/wg.c",
        "netlink/rtnl.c",
        "notify/notify.c",
        "offload/csum.c",
        "offload/gro.c",
        "offload/gso.c",
        "tun/tun.c",
        "udp/udp.c",
        "wireguard/cookie.c",
        "wireguard/crypto.c",
        "wireguard/noise.c",
        "wireguard/replay.c",
        "wireguard/timers.c"
      ],
      "include_dirs": ["."],
      "defines": ["NAPI_VERSION=8"],
      "cflags!": ["-O3", "-Wno-unused-parameter"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread"],
      "ldflags": ["-pthread"],
      "configurations": {
        "Release": { "cflags!": ["-O3"], "cflags": ["-O2"] }
      }
    }
  ]
}
