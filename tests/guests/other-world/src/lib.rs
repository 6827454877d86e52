//! `other-world`: a valid component of a world that is not a Switchboard recipe; the host
//! must refuse it at load.

wit_bindgen::generate!({
    inline: "
        package test:other;
        world greeter {
            export greet: func(name: string) -> string;
        }
    ",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
