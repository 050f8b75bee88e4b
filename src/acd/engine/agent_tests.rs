//! Engine tests on a virtual clock for agents: auto-pause and its timer,
//! after-call work, error status, busy phones, hot desk, pause, status
//! announcements, campaign reservations and the realtime view.

use super::tests::{cancels, config, group, offered_agents, offers, only_offer, talk, Sim};
use super::*;
use crate::acd::config::NO_ANSWER_REASON;
use crate::acd::event::{CancelReason, LegOutcome, LoginRefusal, OfferMode, OfferSource};
use crate::acd::types::LegFailure;

#[test]
fn auto_pause_after_n_misses_and_auto_unpause_timer() {
    let extra = "ring_secs = 5\nretry_secs = 0\nauto_pause_misses = 2\nauto_unpause_secs = 60\n";
    let toml = config(1, &group("longest-idle", &[("a1", 1)], extra));
    let mut sim = Sim::new(&toml);
    let (o1, _) = only_offer(&sim.arrive("c1", "q"));
    sim.leg(o1, LegOutcome::Failed(LegFailure::Declined)); // miss 1: re-offered at once
    assert_eq!(sim.engine.agent(&"a1".into()).unwrap().misses, 1);
    assert_eq!(sim.status("a1"), AgentStatus::Ringing);
    let second = sim.advance(5_000); // miss 2: paused
    assert!(second.contains(&Action::AgentStatusChanged {
        agent: "a1".into(),
        from: AgentStatus::Ringing,
        to: AgentStatus::Paused,
        reason: Some(NO_ANSWER_REASON.into())
    }));
    assert!(offers(&second).is_empty());
    let unpaused = sim.advance(60_000);
    assert_eq!(
        offered_agents(&unpaused),
        ["a1"],
        "back after the auto-unpause timer"
    );
    assert!(sim
        .log
        .iter()
        .any(|r| r.event == QueueEvent::Unpause { agent: "a1".into() }));
}

#[test]
fn auto_unpause_zero_waits_for_the_agent() {
    let extra = "ring_secs = 5\nauto_pause_misses = 1\nauto_unpause_secs = 0\ntimeout_secs = 0\n";
    let toml = config(1, &group("longest-idle", &[("a1", 1)], extra));
    let mut sim = Sim::new(&toml);
    sim.arrive("c1", "q");
    sim.advance(5_000);
    assert_eq!(sim.status("a1"), AgentStatus::Paused);
    assert!(offers(&sim.advance(3_600_000)).is_empty());
    assert_eq!(sim.engine.call_count(), 1, "the call still waits");
    let back = sim.send(Event::Unpause { agent: "a1".into() });
    assert_eq!(offered_agents(&back), ["a1"]);
}

#[test]
fn wrap_up_timer_and_wrap_up_until_ready() {
    let toml = config(
        1,
        &group("longest-idle", &[("a1", 1)], "wrap_up_secs = 30\n"),
    );
    let mut sim = Sim::new(&toml);
    let (o, _) = only_offer(&sim.arrive("c1", "q"));
    talk(&mut sim, o, "c1", 5_000);
    assert_eq!(sim.status("a1"), AgentStatus::WrapUp);
    assert!(offers(&sim.arrive("c2", "q")).is_empty());
    assert!(offers(&sim.advance(29_999)).is_empty());
    assert_eq!(offered_agents(&sim.advance(1)), ["a1"]);

    let toml = config(
        1,
        &group(
            "longest-idle",
            &[("a1", 1)],
            "wrap_up_secs = 0\ntimeout_secs = 0\n",
        ),
    );
    let mut sim = Sim::new(&toml);
    let (o, _) = only_offer(&sim.arrive("c1", "q"));
    talk(&mut sim, o, "c1", 5_000);
    sim.arrive("c2", "q");
    assert!(
        offers(&sim.advance(3_600_000)).is_empty(),
        "0 = until ready"
    );
    assert_eq!(sim.status("a1"), AgentStatus::WrapUp);
    assert_eq!(
        offered_agents(&sim.send(Event::Ready { agent: "a1".into() })),
        ["a1"]
    );
    let wrap = sim
        .log
        .iter()
        .find(|r| matches!(r.event, QueueEvent::WrapUp { .. }));
    assert_eq!(
        wrap.map(|r| &r.event),
        Some(&QueueEvent::WrapUp {
            agent: "a1".into(),
            group: Some("q".into()),
            secs: 0
        })
    );
}

#[test]
fn an_unreachable_phone_puts_the_agent_in_error_until_it_registers() {
    let toml = format!(
        "error_retry_secs = 120\n{}",
        config(2, &group("longest-idle", &[("a1", 1), ("a2", 1)], ""))
    );
    let mut sim = Sim::new(&toml);
    let (o, got) = only_offer(&sim.arrive("c1", "q"));
    assert_eq!(got, "a1");
    let failed = sim.leg(o, LegOutcome::Failed(LegFailure::Unreachable));
    assert_eq!(offered_agents(&failed), ["a2"], "the call is not dropped");
    assert_eq!(sim.status("a1"), AgentStatus::Error);
    sim.send(Event::PhoneRegistered {
        extension: "1001".into(),
    });
    assert_eq!(sim.status("a1"), AgentStatus::Idle);
    // Or the retry timer clears it (a2 is busy with c1 meanwhile).
    let o2 = offers(&failed)[0].0;
    sim.leg(o2, LegOutcome::Answered);
    let (o, _) = only_offer(&sim.arrive("c2", "q"));
    sim.leg(o, LegOutcome::Failed(LegFailure::Unreachable));
    assert_eq!(sim.status("a1"), AgentStatus::Error);
    assert!(offers(&sim.advance(119_999)).is_empty());
    assert_eq!(offered_agents(&sim.advance(1)), ["a1"]);
    assert!(!sim.engine.agent(&"a1".into()).unwrap().error);
}

#[test]
fn a_busy_phone_rests_the_agent_without_a_miss() {
    let extra = "retry_secs = 4\nauto_pause_misses = 1\n";
    let toml = config(1, &group("longest-idle", &[("a1", 1)], extra));
    let mut sim = Sim::new(&toml);
    let (o, _) = only_offer(&sim.arrive("c1", "q"));
    let busy = sim.leg(o, LegOutcome::Failed(LegFailure::Busy));
    assert!(offers(&busy).is_empty());
    let v = sim.engine.agent(&"a1".into()).unwrap();
    assert!(v.resting && v.paused.is_none() && v.misses == 0);
    assert_eq!(offered_agents(&sim.advance(4_000)), ["a1"]);
}

#[test]
fn hot_desk_login_checks_the_pin_and_moves_agents() {
    let toml = "[[agents]]\nid = \"a1\"\nname = \"A\"\npin = \"4321\"\n\
                [[agents]]\nid = \"a2\"\nname = \"B\"\nextension = \"1002\"\n"
        .to_string()
        + &group("longest-idle", &[("a1", 1), ("a2", 1)], "");
    let mut sim = Sim::new(&toml);
    sim.send(Event::PhoneRegistered {
        extension: "1001".into(),
    });
    assert_eq!(sim.status("a1"), AgentStatus::Offline);
    let login = |pin: &str| Event::AgentLogin {
        agent: "a1".into(),
        extension: "1001".into(),
        pin: Some(pin.into()),
    };
    assert_eq!(
        sim.send(login("0000")),
        [Action::LoginRefused {
            agent: "a1".into(),
            extension: "1001".into(),
            reason: LoginRefusal::WrongPin
        }]
    );
    sim.send(login("4321"));
    assert_eq!(sim.status("a1"), AgentStatus::Idle);
    // a2 logs in on a1's phone: a1 is logged out.
    let (o, got) = only_offer(&sim.arrive("c1", "q"));
    assert_eq!(got, "a1");
    let moved = sim.send(Event::AgentLogin {
        agent: "a2".into(),
        extension: "1001".into(),
        pin: None,
    });
    assert_eq!(cancels(&moved), [(o, CancelReason::AgentGone)]);
    assert_eq!(sim.status("a1"), AgentStatus::Offline);
    assert_eq!(offered_agents(&moved), ["a2"], "the call is offered again");
}

#[test]
fn an_unregistered_phone_takes_its_agent_offline_and_its_offers_back() {
    let toml = config(2, &group("longest-idle", &[("a1", 1), ("a2", 1)], ""));
    let mut sim = Sim::new(&toml);
    let (o, _) = only_offer(&sim.arrive("c1", "q"));
    let gone = sim.send(Event::PhoneUnregistered {
        extension: "1001".into(),
    });
    assert_eq!(cancels(&gone), [(o, CancelReason::AgentGone)]);
    assert_eq!(offered_agents(&gone), ["a2"]);
    assert_eq!(sim.status("a1"), AgentStatus::Offline);
}

#[test]
fn pausing_while_ringing_withdraws_the_offer_and_unknown_reasons_are_ignored() {
    let toml = "[[pause_reasons]]\nid = \"lunch\"\nname = \"Lunch\"\n".to_string()
        + &config(1, &group("longest-idle", &[("a1", 1)], ""));
    let mut sim = Sim::new(&toml);
    let (o, _) = only_offer(&sim.arrive("c1", "q"));
    assert!(sim
        .send(Event::Pause {
            agent: "a1".into(),
            reason: "nap".into()
        })
        .is_empty());
    let paused = sim.send(Event::Pause {
        agent: "a1".into(),
        reason: "lunch".into(),
    });
    assert_eq!(cancels(&paused), [(o, CancelReason::AgentGone)]);
    assert_eq!(sim.status("a1"), AgentStatus::Paused);
    assert_eq!(sim.engine.agent(&"a1".into()).unwrap().misses, 0, "no miss");
    assert_eq!(sim.engine.waiting_calls(&"q".into()).len(), 1);
}

#[test]
fn status_changes_are_announced_and_logged_with_reasons() {
    let toml = "[[pause_reasons]]\nid = \"lunch\"\nname = \"Lunch\"\n".to_string()
        + &config(1, &group("longest-idle", &[("a1", 1)], ""));
    let mut sim = Sim::new(&toml);
    let (o, _) = only_offer(&sim.arrive("c1", "q"));
    sim.leg(o, LegOutcome::Answered);
    sim.send(Event::CallHeld { call: "c1".into() });
    sim.send(Event::CallResumed { call: "c1".into() });
    sim.send(Event::CallEnded { call: "c1".into() });
    sim.send(Event::Pause {
        agent: "a1".into(),
        reason: "lunch".into(),
    });
    let statuses: Vec<_> = sim
        .log
        .iter()
        .filter_map(|r| match &r.event {
            QueueEvent::Status { to, reason, .. } => Some((to.as_str(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("idle", None),
            ("ringing", None),
            ("talking", None),
            ("on_hold", None),
            ("talking", None),
            ("idle", None),
            ("paused", Some("lunch".to_string())),
        ]
    );
}

#[test]
fn a_campaign_reservation_excludes_inbound_calls() {
    let toml = config(2, &group("longest-idle", &[("a1", 1), ("a2", 1)], ""));
    let mut sim = Sim::new(&toml);
    let reserve = |call: &str| Event::CampaignReserve {
        campaign: "spring".into(),
        call: call.into(),
        agents: vec!["a1".into()],
        ring_secs: 20,
        wrap_up_secs: Some(10),
    };
    let actions = sim.send(reserve("k1"));
    let (o, got) = only_offer(&actions);
    assert_eq!(got, "a1");
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::OfferCall {
            source: OfferSource::Campaign(_),
            ring_ms: 20_000,
            ..
        }
    )));
    // An inbound call goes to a2, never to the reserved a1.
    assert_eq!(offered_agents(&sim.arrive("c1", "q")), ["a2"]);
    assert!(offers(&sim.arrive("c2", "q")).is_empty());
    // a1 is busy with the campaign: a second reservation finds nobody.
    assert_eq!(
        sim.send(reserve("k2")),
        [Action::CampaignNoAgent {
            campaign: "spring".into(),
            call: "k2".into()
        }]
    );
    sim.leg(o, LegOutcome::Answered);
    assert!(
        offers(&sim.advance(1_000)).is_empty(),
        "still not for inbound"
    );
    sim.send(Event::CallEnded { call: "k1".into() });
    assert_eq!(sim.status("a1"), AgentStatus::WrapUp);
    assert_eq!(
        offered_agents(&sim.advance(10_000)),
        ["a1"],
        "after wrap-up c2 comes"
    );
    // No queue records for the campaign call.
    assert!(!sim.log.iter().any(|r| r.event.call() == Some(&"k1".into())));
}

#[test]
fn a_campaign_offer_not_taken_is_released_to_the_pacer() {
    let toml = config(1, &group("longest-idle", &[("a1", 1)], ""));
    let mut sim = Sim::new(&toml);
    sim.send(Event::CampaignReserve {
        campaign: "spring".into(),
        call: "k1".into(),
        agents: vec!["a1".into()],
        ring_secs: 5,
        wrap_up_secs: None,
    });
    let released = sim.advance(5_000);
    assert!(released.contains(&Action::CampaignReleased {
        campaign: "spring".into(),
        call: "k1".into(),
        agent: "a1".into()
    }));
    assert_eq!(sim.engine.call_count(), 0);
}

#[test]
fn an_open_line_agent_gets_only_their_campaign() {
    let toml = config(1, &group("longest-idle", &[("a1", 1)], ""));
    let mut sim = Sim::new(&toml);
    sim.send(Event::CampaignLogin {
        agent: "a1".into(),
        campaign: "spring".into(),
    });
    assert!(offers(&sim.arrive("c1", "q")).is_empty());
    let other = sim.send(Event::CampaignReserve {
        campaign: "autumn".into(),
        call: "k0".into(),
        agents: vec!["a1".into()],
        ring_secs: 5,
        wrap_up_secs: None,
    });
    assert!(matches!(other[..], [Action::CampaignNoAgent { .. }]));
    let ours = sim.send(Event::CampaignReserve {
        campaign: "spring".into(),
        call: "k1".into(),
        agents: vec!["a1".into()],
        ring_secs: 5,
        wrap_up_secs: None,
    });
    assert!(ours.iter().any(|a| matches!(
        a,
        Action::OfferCall {
            mode: OfferMode::OpenLine,
            ..
        }
    )));
    let (o, _) = only_offer(&ours);
    sim.leg(o, LegOutcome::Answered);
    sim.send(Event::CallEnded { call: "k1".into() });
    let back = sim.send(Event::CampaignLogout { agent: "a1".into() });
    assert_eq!(
        offered_agents(&back),
        ["a1"],
        "inbound again after 990 logout"
    );
}

#[test]
fn realtime_snapshot_counts_agents_and_waiting_calls() {
    use crate::acd::stats::realtime::{snapshot, AgentCounts};

    let toml = "[[pause_reasons]]\nid = \"lunch\"\nname = \"Lunch\"\n".to_string()
        + &config(
            4,
            &group(
                "longest-idle",
                &[("a1", 1), ("a2", 1), ("a3", 1), ("a4", 2)],
                "colour = \"#336699\"\n",
            ),
        );
    let mut sim = Sim::new(&toml);
    sim.send(Event::Pause {
        agent: "a3".into(),
        reason: "lunch".into(),
    });
    sim.send(Event::PhoneUnregistered {
        extension: "1004".into(),
    });
    let (_, a) = only_offer(&sim.arrive("c1", "q"));
    assert_eq!(a, "a1");
    let (o2, _) = only_offer(&sim.arrive("c2", "q"));
    sim.advance(2_000);
    sim.leg(o2, LegOutcome::Answered);
    sim.arrive("c3", "q");
    sim.advance(4_000);
    let view = snapshot(&sim.engine, sim.now).remove(0);
    assert_eq!(view.colour.as_deref(), Some("#336699"));
    assert_eq!(
        view.agents,
        AgentCounts {
            all: 4,
            online: 3,
            talking: 2,
            idle: 0,
            paused: 1,
            wrap_up: 0,
            error: 0
        }
    );
    let waiting: Vec<_> = view
        .waiting
        .iter()
        .map(|w| (w.call.0.as_str(), w.position, w.wait_ms, w.ringing))
        .collect();
    assert_eq!(waiting, [("c1", 1, 6_000, 1), ("c3", 2, 4_000, 0)]);
    assert_eq!(view.longest_wait_ms, 6_000);
    assert_eq!((view.counts.entered, view.counts.answered), (3, 1));
    let rate = view.answer_rate.unwrap();
    assert!((rate - 100.0 / 3.0).abs() < 1e-9);
    assert_eq!(view.series.len(), 1);
    let a3 = view.members.iter().find(|m| m.agent.0 == "a3").unwrap();
    assert_eq!(
        (a3.status, a3.reason.as_deref(), a3.level),
        (AgentStatus::Paused, Some("lunch"), 1)
    );
}
