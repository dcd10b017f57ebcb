{
  "targets": [
    {
      "target_name": "vmm_host",
      "sources": ["src/native/binding.cc", "src/native/fd.cc", "src/native/tap.cc", "src/native/pages.cc", "src/native/disk.cc", "src/native/mknod.cc", "src/native/heap.cc", "src/native/pty.cc", "src/native/seccomp.cc", "src/native/netns.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++20", "-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"]
    },
    {
      "target_name": "vmm-jail",
      "type": "executable",
      "sources": ["src/native/vmm-jail.c", "src/native/vmm-jail-idmap.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"]
    }
  ]
}
