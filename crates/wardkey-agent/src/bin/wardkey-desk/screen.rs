//! The lock screen: a full-screen window over the desktop while the
//! workstation is locked or waits for a PIN, gone while a clinician is
//! signed in. It draws what the agent says ([`DeskScreen`]) and sends PINs
//! back; it cannot unlock anything itself.
//!
//! GTK 4, because it is what Linux desktops and thin clients already ship
//! (Debian's libgtk-4 is on every GNOME or kiosk image), it runs on X11 and
//! Wayland from one binary, renders in software where there is no GPU, and
//! gives touch, keyboard focus and screen-reader roles (AT-SPI) without
//! extra work.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use gtk4::prelude::*;
use gtk4::{gdk, gio, glib};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use wardkey_proto::broker::{DeskScreen, WorkstationState};
use zeroize::Zeroizing;

use crate::link::{ToAgent, ToScreen};

/// The longest PIN the pad takes (a security key's PIN is at most 63).
const MAX_PIN: usize = 63;

/// How long the "Signed in" banner stays.
const BANNER_FOR: Duration = Duration::from_secs(3);

/// Run the lock screen until its window is closed (never, on a ward PC).
pub fn run(
    screens: UnboundedReceiver<ToScreen>,
    agent: UnboundedSender<ToAgent>,
    session_lock: bool,
) -> glib::ExitCode {
    let app = gtk4::Application::builder()
        .application_id("uk.nhs.wardkey.Desk")
        // One lock screen per session is the agent's business, not D-Bus's:
        // no session bus is needed.
        .flags(gio::ApplicationFlags::NON_UNIQUE)
        .build();
    let screens = RefCell::new(Some(screens));
    app.connect_activate(move |app| {
        let Some(screens) = screens.borrow_mut().take() else { return };
        let ui = Ui::build(app, agent.clone(), session_lock);
        ui.draw(&ToScreen::Lost("Connecting to the Wardkey agent…".into()));
        glib::spawn_future_local(async move {
            let mut screens = screens;
            while let Some(next) = screens.recv().await {
                ui.draw(&next);
            }
            // The link is gone for good: stay covered.
            ui.draw(&ToScreen::Lost(
                "The lock screen lost its link to the Wardkey agent. Call the IT service desk.".into(),
            ));
        });
    });
    app.run_with_args::<&str>(&[])
}

/// The widgets, and what the screen remembers between screens.
#[derive(Clone)]
struct Ui {
    window: gtk4::ApplicationWindow,
    banner: gtk4::Window,
    banner_text: gtk4::Label,
    clock: gtk4::Label,
    place: gtk4::Label,
    title: gtk4::Label,
    detail: gtk4::Label,
    dots: gtk4::Label,
    message: gtk4::Label,
    status: gtk4::Label,
    pad: gtk4::Grid,
    keys: Rc<Vec<(String, gtk4::Button)>>,
    pin: Rc<RefCell<Zeroizing<String>>>,
    /// The screen drawn last: its seq, state and who.
    last: Rc<RefCell<DeskScreen>>,
    pad_open: Rc<Cell<bool>>,
    agent: UnboundedSender<ToAgent>,
    /// Lock and unlock the logind session along with the screen.
    session_lock: bool,
}

impl Ui {
    fn build(app: &gtk4::Application, agent: UnboundedSender<ToAgent>, session_lock: bool) -> Self {
        let css = gtk4::CssProvider::new();
        css.load_from_data(include_str!("style.css"));
        let display = gdk::Display::default().expect("GTK has a display once the application is active");
        gtk4::style_context_add_provider_for_display(&display, &css, gtk4::STYLE_PROVIDER_PRIORITY_APPLICATION);

        let label = |class: &str| {
            gtk4::Label::builder()
                .css_classes([class])
                .wrap(true)
                .justify(gtk4::Justification::Center)
                .max_width_chars(48)
                .build()
        };
        let clock = label("clock");
        let place = label("place");
        let title = label("title");
        let detail = label("detail");
        let dots = label("dots");
        let message = gtk4::Label::builder()
            .css_classes(["message"])
            .wrap(true)
            .justify(gtk4::Justification::Center)
            .max_width_chars(60)
            .accessible_role(gtk4::AccessibleRole::Alert)
            .halign(gtk4::Align::Center)
            .visible(false)
            .build();
        let status = label("status");
        status.set_visible(false);

        let pad = gtk4::Grid::builder()
            .row_spacing(12)
            .column_spacing(12)
            .halign(gtk4::Align::Center)
            .row_homogeneous(true)
            .column_homogeneous(true)
            .build();
        let labels = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "Delete", "0", "Enter"];
        let mut keys = Vec::new();
        for (i, text) in labels.iter().enumerate() {
            // A click or touch leaves the focus where it was: a key that
            // lit up after each press would show onlookers the PIN.
            let button = gtk4::Button::builder().label(*text).css_classes(["key"]).focus_on_click(false).build();
            match *text {
                "Delete" => button.update_property(&[gtk4::accessible::Property::Label("Delete the last digit")]),
                "Enter" => {
                    button.add_css_class("enter");
                    button.update_property(&[gtk4::accessible::Property::Label("Enter the PIN")]);
                }
                _ => {}
            }
            pad.attach(&button, (i % 3) as i32, (i / 3) as i32, 1, 1);
            keys.push((text.to_string(), button));
        }

        let top = gtk4::CenterBox::new();
        top.set_start_widget(Some(&place));
        top.set_end_widget(Some(&clock));
        top.set_margin_start(32);
        top.set_margin_end(32);
        top.set_margin_top(20);

        let middle = gtk4::Box::new(gtk4::Orientation::Vertical, 18);
        middle.set_valign(gtk4::Align::Center);
        middle.set_vexpand(true);
        for w in [title.upcast_ref::<gtk4::Widget>(), detail.upcast_ref(), dots.upcast_ref()] {
            middle.append(w);
        }
        middle.append(&message);
        middle.append(&pad);

        let page = gtk4::Box::new(gtk4::Orientation::Vertical, 0);
        page.append(&top);
        page.append(&middle);
        status.set_margin_bottom(24);
        status.set_halign(gtk4::Align::Center);
        page.append(&status);

        let window = gtk4::ApplicationWindow::builder()
            .application(app)
            .title("Wardkey: tap your badge")
            .decorated(false)
            .css_classes(["lock"])
            .child(&page)
            .build();
        // Cover the whole screen even where no window manager honours
        // "fullscreen" (a bare X server on a thin client).
        if let Some(geometry) = display.monitors().item(0).and_downcast::<gdk::Monitor>().map(|m| m.geometry()) {
            window.set_default_size(geometry.width(), geometry.height());
        }
        window.fullscreen();
        // Closing the lock screen must not reveal the desktop.
        window.connect_close_request(|_| glib::Propagation::Stop);

        let banner_text = gtk4::Label::new(None);
        let banner = gtk4::Window::builder()
            .application(app)
            .title("Wardkey: signed in")
            .decorated(false)
            .css_classes(["banner"])
            .child(&banner_text)
            .build();

        let ui = Ui {
            window,
            banner,
            banner_text,
            clock,
            place,
            title,
            detail,
            dots,
            message,
            status,
            pad,
            keys: Rc::new(keys),
            pin: Rc::new(RefCell::new(Zeroizing::new(String::new()))),
            last: Rc::new(RefCell::new(DeskScreen::default())),
            pad_open: Rc::new(Cell::new(false)),
            agent,
            session_lock,
        };
        ui.connect_input();
        ui.tick_clock();
        ui
    }

    /// Pad buttons, and the keyboard (digits, Backspace, Enter, Escape)
    /// wherever the focus is.
    fn connect_input(&self) {
        for (text, button) in self.keys.iter() {
            let ui = self.clone();
            let text = text.clone();
            button.connect_clicked(move |_| match text.as_str() {
                "Delete" => ui.delete(),
                "Enter" => ui.submit(),
                digit => ui.type_char(digit.chars().next().unwrap_or('0')),
            });
        }
        let keys = gtk4::EventControllerKey::new();
        keys.set_propagation_phase(gtk4::PropagationPhase::Capture);
        let ui = self.clone();
        keys.connect_key_pressed(move |_, key, _, _| {
            if !ui.pad_open.get() {
                return glib::Propagation::Proceed;
            }
            match key {
                gdk::Key::BackSpace | gdk::Key::Delete | gdk::Key::KP_Delete => ui.delete(),
                gdk::Key::Return | gdk::Key::KP_Enter | gdk::Key::ISO_Enter => ui.submit(),
                gdk::Key::Escape => ui.clear_pin(),
                // Space activates the focused pad button.
                gdk::Key::space | gdk::Key::Tab | gdk::Key::ISO_Left_Tab => return glib::Propagation::Proceed,
                _ => match key.to_unicode().filter(|c| !c.is_control()) {
                    Some(c) => ui.type_char(c),
                    None => return glib::Propagation::Proceed,
                },
            }
            glib::Propagation::Stop
        });
        self.window.add_controller(keys);
    }

    fn tick_clock(&self) {
        let clock = self.clock.clone();
        let set = move || {
            if let Ok(now) = glib::DateTime::now_local().and_then(|t| t.format("%H:%M")) {
                clock.set_text(&now);
            }
        };
        set();
        glib::timeout_add_seconds_local(10, move || {
            set();
            glib::ControlFlow::Continue
        });
    }

    fn type_char(&self, c: char) {
        let mut pin = self.pin.borrow_mut();
        if pin.chars().count() < MAX_PIN {
            pin.push(c);
        }
        let shown = pin.chars().count();
        drop(pin);
        self.show_dots(shown);
    }

    fn delete(&self) {
        let shown = {
            let mut pin = self.pin.borrow_mut();
            pin.pop();
            pin.chars().count()
        };
        self.show_dots(shown);
    }

    fn clear_pin(&self) {
        self.pin.borrow_mut().clear();
        self.show_dots(0);
    }

    fn show_dots(&self, n: usize) {
        self.dots.set_text(&"●".repeat(n));
        self.dots.update_property(&[gtk4::accessible::Property::Label(&format!("{n} digits typed"))]);
    }

    fn submit(&self) {
        let pin = std::mem::replace(&mut *self.pin.borrow_mut(), Zeroizing::new(String::new()));
        self.show_dots(0);
        if pin.is_empty() {
            return;
        }
        self.detail.set_text("Checking your PIN…");
        let _ = self.agent.send(ToAgent::Pin(pin));
    }

    /// Draw what the agent (or the link to it) says.
    fn draw(&self, next: &ToScreen) {
        match next {
            ToScreen::Screen(screen) => self.draw_screen(screen),
            ToScreen::Lost(sentence) => {
                // Fail closed: the desktop stays covered.
                *self.last.borrow_mut() = DeskScreen::default();
                self.lock_view("This PC is locked", "");
                self.say(Some(sentence), true);
                self.status.set_visible(false);
                self.place.set_text("");
                self.cover();
            }
            ToScreen::Notice(sentence) => self.say(Some(sentence), true),
        }
    }

    fn draw_screen(&self, s: &DeskScreen) {
        let before = self.last.replace(s.clone());
        let name = s.user.as_ref().map(|u| u.name.clone().unwrap_or_else(|| u.username.clone()));
        self.place.set_text(&s.workstation);
        let new_state = before.state != s.state || before.user != s.user || before.key_pin != s.key_pin;
        if new_state {
            self.clear_pin();
        }
        if s.state == WorkstationState::Active {
            self.uncover(s, &before, name.as_deref().unwrap_or(""));
            return;
        }
        if s.key_pin {
            self.pin_view("Security key", "Type your security key's PIN, keeping the key on the reader.");
        } else if s.state == WorkstationState::PinRequired {
            let hello = format!("Hello, {}", name.as_deref().unwrap_or("there"));
            self.pin_view(&hello, "Enter your PIN, then press Enter.");
        } else {
            self.lock_view("Tap your badge", "Hold your staff badge on the reader to sign in.");
        }
        self.say(s.message.as_deref(), s.alert);
        self.status.set_visible(s.server_unreachable);
        self.status.set_text(
            "The Wardkey server cannot be reached. Badges work again as soon as it is back; \
             ask the IT service desk if this lasts.",
        );
        if new_state && s.state == WorkstationState::PinRequired || s.alert {
            // The cue that a tap registered (or went wrong).
            WidgetExt::display(&self.window).beep();
        }
        self.cover();
    }

    fn lock_view(&self, title: &str, detail: &str) {
        self.title.set_text(title);
        self.detail.set_text(detail);
        self.dots.set_visible(false);
        self.pad.set_visible(false);
        self.pad_open.set(false);
    }

    fn pin_view(&self, title: &str, detail: &str) {
        self.title.set_text(title);
        self.detail.set_text(detail);
        self.dots.set_visible(true);
        self.pad.set_visible(true);
        if !self.pad_open.replace(true) {
            if let Some((_, first)) = self.keys.first() {
                first.grab_focus();
            }
            self.log_layout();
        }
    }

    fn say(&self, sentence: Option<&str>, alert: bool) {
        match sentence {
            Some(text) => {
                let mut text = text.to_string();
                if let Some(first) = text.get(..1) {
                    text.replace_range(..1, &first.to_uppercase());
                }
                self.message.set_text(&text);
                self.message.set_visible(true);
                if alert {
                    self.message.add_css_class("alert");
                } else {
                    self.message.remove_css_class("alert");
                }
            }
            None => self.message.set_visible(false),
        }
    }

    /// Show the lock screen over everything.
    fn cover(&self) {
        self.banner.set_visible(false);
        if !self.window.is_visible() {
            self.window.present();
            self.window.fullscreen();
            self.logind("lock-session");
        }
    }

    /// Show the desktop, greet the clinician, and tell the agent the
    /// desktop is showing (where tap to desktop is measured).
    fn uncover(&self, s: &DeskScreen, before: &DeskScreen, name: &str) {
        self.pad_open.set(false);
        if self.window.is_visible() {
            self.logind("unlock-session");
        }
        self.window.set_visible(false);
        WidgetExt::display(&self.window).flush();
        let _ = self.agent.send(ToAgent::Shown(s.seq));
        let switched = before.state == WorkstationState::Active && before.user != s.user;
        if before.state != WorkstationState::Active || switched {
            let text = if switched { format!("Switched to {name}") } else { format!("Signed in: {name}") };
            self.banner_text.set_text(&text);
            self.banner.present();
            let (banner, seq, last) = (self.banner.clone(), s.seq, self.last.clone());
            glib::timeout_add_local_once(BANNER_FOR, move || {
                if last.borrow().seq == seq {
                    banner.set_visible(false);
                }
            });
        }
    }

    /// `loginctl lock-session` or `unlock-session` for this session, when
    /// configured (never waited for: the screen does not depend on it).
    fn logind(&self, verb: &'static str) {
        if !self.session_lock {
            return;
        }
        match std::process::Command::new("loginctl").arg(verb).spawn() {
            Ok(mut child) => {
                std::thread::spawn(move || {
                    if !child.wait().is_ok_and(|s| s.success()) {
                        tracing::warn!("loginctl {verb} failed (is this a logind session?)");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot run loginctl {verb}"),
        }
    }

    /// Where each pad key is on screen, for tests that press them with
    /// synthetic input (logged once the pad has been laid out).
    fn log_layout(&self) {
        let (window, keys) = (self.window.clone(), self.keys.clone());
        glib::timeout_add_local_once(Duration::from_millis(150), move || {
            for (text, button) in keys.iter() {
                if let Some(b) = button.compute_bounds(&window) {
                    tracing::debug!(
                        target: "wardkey_desk::layout",
                        key = %text,
                        x = b.x() as i32,
                        y = b.y() as i32,
                        w = b.width() as i32,
                        h = b.height() as i32,
                        "pad key"
                    );
                }
            }
        });
    }
}
