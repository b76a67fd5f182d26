//! A valid component that implements some other world: the host must
//! refuse it at load, naming the file. Only meaningful as a component.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    inline: "package test:other; world other { export run: func() -> u32; }",
});

struct Other;

impl Guest for Other {
    fn run() -> u32 {
        42
    }
}

export!(Other);
