{
  "targets": [
    {
      "target_name": "rudder_native",
      "sources": [
        "addon.c",
        "dataplane.c",
        "tun.c",
        "notify.c",
        "offload/csum.c",
        "offload/gso.c",
        "offload/gro.c"
      ],
      "include_dirs": ["."],
      "defines": ["NAPI_VERSION=8"],
      "cflags!": ["-O3", "-Wno-unused-parameter"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-pthread"],
      "ldflags": ["-pthread"],
      "configurations": {
        "Release": { "cflags!": ["-O3"], "cflags": ["-O2"] }
      }
    }
  ]
}
