//! Sets up linking for a Node addon (the N-API symbols come from the loading process).

fn main() {
    napi_build::setup();
}
