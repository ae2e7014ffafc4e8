//! The admission core on fuzzer input: either a raw AdmissionReview body,
//! or (first byte odd) lines of `KEY=VALUE` made into the annotations of a
//! pod. Whatever the input, the core answers without panicking, and an
//! allowed pod's patch applies to it.
#![no_main]

use std::sync::{Arc, OnceLock};

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use vault_injector::admission::Injector;
use vault_injector_core::config::WebhookConfig;

struct Core {
    injector: Injector,
    rt: tokio::runtime::Runtime,
}

fn core() -> &'static Core {
    static CORE: OnceLock<Core> = OnceLock::new();
    CORE.get_or_init(|| Core {
        injector: Injector::try_new(Arc::new(WebhookConfig::default())).unwrap(),
        rt: tokio::runtime::Builder::new_current_thread().build().unwrap(),
    })
}

fn review_of(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "f",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "fuzz",
            "operation": "CREATE",
            "userInfo": {"username": "fuzz"},
            "object": pod,
        }
    }))
    .unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let c = core();
    if mode & 1 == 0 {
        let _ = c.rt.block_on(c.injector.review(rest));
        return;
    }
    let text = String::from_utf8_lossy(rest);
    let mut annotations = Map::new();
    for line in text.split('\n') {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        // Volume profiles are read from Vault; the fuzzer uses no network.
        if k.starts_with("vault-injector.io/volume-") {
            continue;
        }
        annotations.insert(k.to_string(), Value::String(v.replace("\\n", "\n")));
    }
    let pod = json!({
        "metadata": {"name": "fuzz", "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "setup", "image": "x", "command": ["/setup"]}],
            "containers": [{"name": "app", "image": "x", "command": ["/app"],
                            "env": [{"name": "A", "value": "vault:secret/data/a#k"}]}]
        }
    });
    let out = c
        .rt
        .block_on(c.injector.review(&review_of(&pod)))
        .expect("a well-formed review is answered");
    let v: Value = serde_json::from_slice(&out.body).unwrap();
    if let Some(p) = v["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        let mut doc = pod.clone();
        json_patch::patch(&mut doc, &patch).expect("the patch applies");
    }
});
