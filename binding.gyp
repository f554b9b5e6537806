{
  "targets": [
    {
      "target_name": "dsmoe",
      "sources": [
        "<!@(node -e \"const fs=require('fs'),p=require('path');const out=[];for(const d of ['native/core','native/kernels/cpu','native/backend','native/model','native/infer','native/bindings']){if(!fs.existsSync(d))continue;for(const f of fs.readdirSync(d).sort())if(f.endsWith('.cc'))out.push(p.posix.join(d,f));}console.log(out.join(' '))\")"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "DSMOE_BUILD_SYSTEM=\"node-gyp\""],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-Wno-unused-parameter"],
      "libraries": ["-lpthread", "-ldl"]
    }
  ]
}
