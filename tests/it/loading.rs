//! Loading plugins: good ones, bad ones, the compile cache, kv that outlives the host.

use crate::support::*;
use switchboard::model::{Capability, Outcome, Trigger};
use switchboard::runtime::plugin::LoadError;
use switchboard::vendors::Connections;
use switchboard_test_guests::{HELLO, OLD_CONTRACT, OTHER_WORLD};

#[tokio::test]
async fn hello_loads_with_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let hello = load(&rt, HELLO).await;
    assert_eq!(&*hello.name, "hello");
    assert_eq!(hello.manifest.capabilities, vec![Capability::Kv]);
    assert_eq!(
        hello.manifest.triggers,
        vec![Trigger::Webhook {
            source: "*".into(),
            kind: "*".into()
        }]
    );
    assert!(
        hello
            .imports
            .iter()
            .any(|i| i == "switchboard:recipes/kv@0.4.0"),
        "{:?}",
        hello.imports
    );
}

#[tokio::test]
async fn garbage_bytes_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"this is not wasm at all").unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let err = rt.load(&path).await.unwrap_err();
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("garbage.wasm") && msg.contains("not a WebAssembly file"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_core_module_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let err = rt.load(&path).await.unwrap_err();
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("core.wasm") && msg.contains("not a component"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let err = rt
        .load(std::path::Path::new(OTHER_WORLD))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("other_world.wasm") && msg.contains("not a Switchboard recipe"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_recipe_built_against_an_older_contract_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let err = rt
        .load(std::path::Path::new(OLD_CONTRACT))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("old_contract.wasm")
            && msg.contains("built against switchboard:recipes@0.1.0")
            && msg.contains("serves @0.4.0: rebuild it with the current switchboard-sdk"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_folder_with_bad_files_still_loads_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(HELLO, plugins.join("hello.wasm")).unwrap();
    std::fs::copy(OTHER_WORLD, plugins.join("other.wasm")).unwrap();
    std::fs::write(plugins.join("broken.wasm"), b"\0asm").unwrap();
    std::fs::write(plugins.join("notes.txt"), b"ignored").unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let (loaded, errors) = rt.load_dir(&plugins).await.unwrap();
    assert_eq!(
        loaded
            .iter()
            .map(|p| p.name.to_string())
            .collect::<Vec<_>>(),
        ["hello"]
    );
    let mut messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    messages.sort();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].contains("broken.wasm"), "{messages:?}");
    assert!(messages[1].contains("other.wasm"), "{messages:?}");
    // The good plugin serves.
    let hello = loaded.get("hello").unwrap();
    let report = rt.run(hello, &event("x", serde_json::json!({}))).await;
    assert!(report.outcome.is_some(), "{report:?}");
}

#[tokio::test]
async fn two_files_with_one_recipe_name_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(HELLO, plugins.join("a.wasm")).unwrap();
    std::fs::copy(HELLO, plugins.join("b.wasm")).unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let (loaded, errors) = rt.load_dir(&plugins).await.unwrap();
    assert_eq!(loaded.len(), 1);
    let msg = errors[0].to_string();
    assert!(
        msg.contains("b.wasm") && msg.contains("already loaded from"),
        "{msg}"
    );
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.cache_dir = Some(dir.path().join("cache"));
    {
        let rt = runtime_at(dir.path(), opts.clone(), Connections::default());
        load(&rt, HELLO).await;
        assert_eq!(rt.compilations(), 1);
    }
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].ends_with(".cwasm"), "{cached:?}");
    let rt = runtime_at(dir.path(), opts, Connections::default());
    let hello = load(&rt, HELLO).await;
    assert_eq!(rt.compilations(), 0, "a restart must not recompile");
    let report = rt.run(&hello, &event("x", serde_json::json!({}))).await;
    assert!(report.outcome.is_some(), "{report:?}");
}

#[tokio::test]
async fn kv_state_survives_a_host_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (rt, store) = runtime_with_store(dir.path(), options(), Connections::default());
        let hello = load(&rt, HELLO).await;
        for _ in 0..2 {
            rt.run(&hello, &event("customer.updated", serde_json::json!({})))
                .await;
        }
        store.flush().unwrap();
    }
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let hello = load(&rt, HELLO).await;
    let report = rt
        .run(&hello, &event("customer.updated", serde_json::json!({})))
        .await;
    assert_eq!(
        report.outcome,
        Some(Outcome::Done("customer.updated seen 3 time(s)".into()))
    );
}

fn with_settings(name: &str, toml_text: &str) -> switchboard::runtime::RuntimeOptions {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let mut options = options();
    options
        .settings
        .insert(name.into(), serde_json::to_string(&table).unwrap().into());
    options
}

#[tokio::test]
async fn settings_reach_the_recipe_typed() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_at(
        dir.path(),
        with_settings("pipe", "label = \"west\"\nrepeat = 2\n"),
        Connections::default(),
    );
    let plugin = load(&runtime, switchboard_test_guests::PIPE).await;
    let report = runtime
        .run(&plugin, &event("test.event", serde_json::json!({})))
        .await;
    assert_eq!(
        report.outcome,
        Some(Outcome::Done("v1.0.0 westv1.0.0 west".into())),
        "{report:?}"
    );
}

#[tokio::test]
async fn bad_settings_refuse_the_plugin_naming_the_setting() {
    for (name, path, settings, expect) in [
        (
            "pipe",
            switchboard_test_guests::PIPE,
            "labl = \"x\"",
            "unknown field `labl`",
        ),
        (
            "pipe",
            switchboard_test_guests::PIPE,
            "repeat = \"twice\"",
            "invalid type: string \"twice\"",
        ),
        (
            "hello",
            HELLO,
            "greeting = \"hi\"",
            "takes no settings, but the config sets greeting",
        ),
        // Time zones are checked by the host's clock, quiet hours by the SDK.
        (
            "new-lead-sms",
            switchboard_test_guests::NEW_LEAD_SMS,
            "time_zone = \"Mars/Olympus\"",
            "'Mars/Olympus' is not an IANA time zone",
        ),
        (
            "new-lead-sms",
            switchboard_test_guests::NEW_LEAD_SMS,
            "quiet_hours = \"9pm-8am\"",
            "'9pm' is not a time of day (HH:MM)",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime_at(
            dir.path(),
            with_settings(name, settings),
            Connections::default(),
        );
        let e = runtime.load(std::path::Path::new(path)).await.unwrap_err();
        assert!(matches!(e, LoadError::Settings { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("[plugins.{name}.settings]")), "{msg}");
        assert!(msg.contains(expect), "{msg}");
    }
}

#[tokio::test]
async fn a_connection_map_must_name_connections_the_recipe_uses() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.connection_maps.insert(
        "hello".into(),
        [("ghl".to_string(), "ghl-west".to_string())].into(),
    );
    let runtime = runtime_at(dir.path(), opts, Connections::default());
    let e = runtime.load(std::path::Path::new(HELLO)).await.unwrap_err();
    assert!(matches!(e, LoadError::Connections { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("[plugins.hello] connections"), "{msg}");
    assert!(
        msg.contains("maps 'ghl', which the recipe does not use"),
        "{msg}"
    );
}
