//! `old-contract`: a recipe built against an earlier version of the Switchboard contract
//! (`switchboard:recipes@0.1.0`); the host must refuse it at load, saying to rebuild it.

wit_bindgen::generate!({
    inline: "
        package switchboard:recipes@0.1.0;
        interface log {
            enum level { trace, debug, info, warn, error }
            log: func(level: level, message: string, fields: list<tuple<string, string>>);
        }
        world recipe {
            import log;
            export handle: func(kind: string) -> string;
        }
    ",
});

struct Old;

impl Guest for Old {
    fn handle(kind: String) -> String {
        switchboard::recipes::log::log(switchboard::recipes::log::Level::Info, &kind, &[]);
        kind
    }
}

export!(Old);
