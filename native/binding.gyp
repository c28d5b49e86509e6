{
  "targets": [
    {
      "target_name": "rudder_native",
      "sources": ["addon.c", "dataplane.c", "gso.c", "tun.c", "notify.c"],
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
