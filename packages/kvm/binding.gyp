{
  "targets": [
    {
      "target_name": "vmm_kvm",
      "sources": [
        "src/native/binding.cc",
        "src/native/system.cc",
        "src/native/memory.cc",
        "src/native/vm.cc",
        "src/native/vcpu.cc",
        "src/native/vcpu_state.cc",
        "src/native/vcpu_seccomp.cc",
        "src/native/flex.c"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++20", "-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"]
    }
  ]
}
