//! `Indicators` as gRPC serves it: each method records its call in the audit trail (the
//! values it names, its outcome) around the work of [`IndicatorsService`]'s `_call` method. A
//! call naming more values than it may is refused and recorded naming none, as is a caller the
//! roster refuses (revoked, shut out), a lookup by a caller that is not a service (an admin or
//! node certificate), and a write by a caller that may not publish (read-only, another org's):
//! normalizing and recording what it sent would be work and trail space such
//! a certificate could command at will.

use std::sync::Arc;

use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_server::Indicators;
use tonic::{Request, Response, Status};

use super::indicators::{publishing_service, IndicatorsService, WatchStream};
use super::lookup::MAX_LOOKUPS;
use super::submission::MAX_SUBMISSIONS;
use crate::admission::check_api_caller;
use crate::audit;

impl IndicatorsService {
    /// The recorded refusal of a caller the roster refuses, if it is one.
    async fn refused<T, R>(
        &self,
        request: &Request<T>,
        method: &'static str,
    ) -> Option<Result<Response<R>, Status>> {
        let refusal = check_api_caller(&self.state, request).err()?;
        Some(self.refuse(request, method, refusal).await)
    }

    /// The recorded refusal of a write by a caller that may not publish, if it is one.
    async fn refused_write<T, R>(
        &self,
        request: &Request<T>,
        method: &'static str,
    ) -> Option<Result<Response<R>, Status>> {
        if let Some(refused) = self.refused(request, method).await {
            return Some(refused);
        }
        let refusal = publishing_service(&self.state, request).err()?;
        Some(self.refuse(request, method, refusal).await)
    }

    async fn refuse<T, R>(
        &self,
        request: &Request<T>,
        method: &'static str,
        refusal: Status,
    ) -> Result<Response<R>, Status> {
        let call = self.state.audit().begin(request, method, Vec::new());
        call.end(Err(refusal)).await
    }
}

#[tonic::async_trait]
impl Indicators for IndicatorsService {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        if let Some(refused) = self.refused_write(&request, "Indicators/Submit").await {
            return refused;
        }
        let submissions = &request.get_ref().submissions;
        // A call refused for its size names no value: it costs the trail nothing per value.
        let values = if submissions.len() <= MAX_SUBMISSIONS {
            let values = submissions.iter();
            values.map(|s| audit::typed(s.r#type, &s.value)).collect()
        } else {
            Vec::new()
        };
        let call = self
            .state
            .audit()
            .begin(&request, "Indicators/Submit", values)
            .changing();
        if let Some(refused) = call.refusal() {
            return call.end(Err(refused)).await;
        }
        call.end(self.submit_call(request).await).await
    }

    async fn report_sighting(
        &self,
        request: Request<pb::ReportSightingRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        if let Some(refused) = self
            .refused_write(&request, "Indicators/ReportSighting")
            .await
        {
            return refused;
        }
        let r = request.get_ref();
        let values = vec![audit::typed(r.r#type, &r.value)];
        let call = self
            .state
            .audit()
            .begin(&request, "Indicators/ReportSighting", values)
            .changing();
        if let Some(refused) = call.refusal() {
            return call.end(Err(refused)).await;
        }
        call.end(self.report_sighting_call(request).await).await
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        if let Some(refused) = self.refused(&request, "Indicators/Get").await {
            return refused;
        }
        let r = request.get_ref();
        let values = vec![audit::typed(r.r#type, &r.value)];
        let call = self.state.audit().begin(&request, "Indicators/Get", values);
        call.end(self.get_call(request).await).await
    }

    /// A filter names no value: recorded with none.
    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        if let Some(refused) = self.refused(&request, "Indicators/Query").await {
            return refused;
        }
        let call = self
            .state
            .audit()
            .begin(&request, "Indicators/Query", Vec::new());
        call.end(self.query_call(request).await).await
    }

    async fn lookup(
        &self,
        mut request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        if let Some(refused) = self.refused(&request, "Indicators/Lookup").await {
            return refused;
        }
        // Shared with the chunks that answer them, and named as given if the call is dropped
        // before its end (its caller went away); an ended call names each value in the
        // canonical form its answer found, else as given (none for a request refused for its
        // size).
        let values = Arc::new(std::mem::take(&mut request.get_mut().values));
        let call = self
            .state
            .audit()
            .begin(&request, "Indicators/Lookup", Vec::new());
        let call = match values.len() <= MAX_LOOKUPS {
            true => call.raw_if_dropped(Arc::clone(&values)),
            false => call,
        };
        let named = self.lookup_call(&request, values).await;
        call.naming(named.values).end(named.outcome).await
    }

    type WatchStream = WatchStream;

    /// Recorded when the stream opens (or is refused), with no value.
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        if let Some(refused) = self.refused(&request, "Indicators/Watch").await {
            return refused;
        }
        let call = self
            .state
            .audit()
            .begin(&request, "Indicators/Watch", Vec::new());
        call.end(self.watch_call(request).await).await
    }
}
